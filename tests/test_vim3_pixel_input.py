"""The NPU graph takes decoded pixels: the card's mean/std folded into the graph compute what the original graph
computes on normalised inputs (onnxruntime on both), and the held-out images never calibrate.

No toolkit needed: these check edgepad's own graph rewrite and image selection; tests/test_vim3_npu.py runs them
through acuitylite.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgepad.convert.vim3.pixel_graph import pixel_input_graph
from edgepad.convert.vim3.vim3_npu import select_images
from edgepad.errors import InputFileError


def _graph(first_op: str, pads, strides, group: int = 1) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    channels = 3
    nodes, inits = [], []
    if first_op == "Conv":
        w = rng.normal(size=(8 if group == 1 else 3, channels // group, 3, 3)).astype(np.float32)
        b = rng.normal(size=(w.shape[0],)).astype(np.float32)
        inits += [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
        nodes.append(helper.make_node("Conv", ["x", "w", "b"], ["c"], name="stem", pads=pads, strides=strides,
                                      group=group))
        width = w.shape[0]
    else:  # a first op the fold does not take: the graph gets a Mul + Add in front
        nodes.append(helper.make_node("Relu", ["x"], ["c"], name="stem"))
        width = channels
    nodes.append(helper.make_node("GlobalAveragePool", ["c"], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 17, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width, 1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("first_op, pads, strides, group, how", [
    ("Conv", [0, 0, 1, 1], [2, 2], 1, "folded"),   # MobileNet's stem: stride 2, padding on the bottom/right only
    ("Conv", [1, 1, 1, 1], [1, 1], 1, "folded"),
    ("Conv", [0, 0, 0, 0], [1, 1], 1, "folded"),
    ("Conv", [1, 1, 1, 1], [1, 1], 3, "mul-add"),  # depthwise stem: not folded
    ("Relu", None, None, 1, "mul-add"),
])
def test_pixel_graph_computes_the_original_on_normalised_pixels(first_op, pads, strides, group, how):
    mean, std = [127.5, 120.0, 100.0], [127.5, 60.0, 58.0]
    original = _graph(first_op, pads, strides, group)
    rewritten, used = pixel_input_graph(original, mean, std)
    assert used == how
    pixels = np.random.default_rng(1).integers(0, 256, (1, 3, 17, 16)).astype(np.float32)
    pixels[..., 0, :] = 0  # the border, where padding is read, at the extremes
    pixels[..., -1, :] = 255
    normalised = ((pixels - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None])
    expected, got = _run(original, normalised.astype(np.float32)), _run(rewritten, pixels)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_padding_correction_matters():
    """Without the border correction the folded stem would differ from the original where it reads padding."""
    original = _graph("Conv", [1, 1, 1, 1], [1, 1])
    rewritten, _ = pixel_input_graph(original, [127.5], [127.5])
    assert any(node.op_type == "Add" for node in rewritten.graph.node)  # the constant border map
    rewritten.graph.node.remove(next(n for n in rewritten.graph.node if n.op_type == "Add"))
    rewritten.graph.node[0].output[0] = "c"
    pixels = np.full((1, 3, 17, 16), 200, np.float32)
    assert np.abs(_run(rewritten, pixels) - _run(original, (pixels - 127.5) / 127.5)).max() > 1e-2


def _images(folder, names):
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        cv2.imwrite(str(folder / name), np.full((8, 8, 3), i * 7 % 256, np.uint8))
    return folder


def test_default_held_out_share_never_calibrates(tmp_path):
    folder = _images(tmp_path / "cal", [f"face{i:02d}.png" for i in range(20)])
    chosen = select_images(folder, None, 100, required=True)
    assert len(chosen.evaluation) == 4 and len(chosen.calibration) == 16
    assert not set(chosen.evaluation) & set(chosen.calibration)


def test_eval_images_sharing_a_calibration_image_are_refused(tmp_path):
    calibration = _images(tmp_path / "cal", ["a.png", "b.png", "c.png"])
    evaluation = _images(tmp_path / "ev", ["x.png", "y.png"])  # same pixels as a.png and b.png
    with pytest.raises(InputFileError, match="--eval-images: 2 image.*also calibration images"):
        select_images(calibration, evaluation, 10, required=True)
    separate = _images(tmp_path / "ev2", ["p.png", "q.png", "r.png", "s.png"])  # values 0, 7, 14, 21 again ...
    for i, path in enumerate(sorted(separate.iterdir())):
        import cv2

        cv2.imwrite(str(path), np.full((8, 8, 3), 200 + i, np.uint8))
    chosen = select_images(calibration, separate, 10, required=True)
    assert len(chosen.calibration) == 3 and len(chosen.evaluation) == 4
