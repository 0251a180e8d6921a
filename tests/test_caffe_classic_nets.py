"""The nine classic ImageNet networks of the onnx wheel's backend test data (AlexNet, GoogLeNet, Inception-v2,
SqueezeNet, VGG19, ZFNet, ResNet50, ShuffleNet, DenseNet121; opset 9, most of them Caffe models first), with
seeded random weights, converted ONNX -> Caffe and read back by OpenCV 4's own Caffe importer: each computes what
onnxruntime computes, within FLOAT32_SCALED_ATOL of the output's scale."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgepad.convert.caffe.onnx_to_caffe import onnx_to_caffe, write_caffe_files
from edgepad.convert.caffe.opencv_runner import run_caffe
from edgepad.convert.onnx.onnx_runner import run_onnx
from edgepad.convert.parity import FLOAT32_SCALED_ATOL, compare_outputs

from support.board_env import test_cache as cache_root
from support.classic_nets import CLASSIC_NETS, classic_input, classic_net

pytestmark = pytest.mark.slow  # full-size nets: VGG19 alone is 143M weights (about 30 s here)


def onnxruntime_reference(name: str, model, x: np.ndarray) -> dict[str, list[np.ndarray]]:
    """onnxruntime's outputs, kept in EDGEPAD_TEST_CACHE: the reference does not change between runs unless the
    net, its seed or the onnx/onnxruntime versions do, and a VGG-size run costs seconds."""
    import onnx
    import onnxruntime

    folder = cache_root() / "classic_nets"
    path = folder / f"{name}-seed0-onnx{onnx.__version__}-ort{onnxruntime.__version__}.npz"
    names = [o.name for o in model.graph.output]
    if path.exists():
        stored = np.load(path)
        if json.loads(str(stored["names"])) == names and np.array_equal(stored["x"], x):
            return {n: [stored[f"out{i}"]] for i, n in enumerate(names)}
    reference = run_onnx(model, [x])
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, names=json.dumps(names), x=x, **{f"out{i}": reference[n][0] for i, n in enumerate(names)})
    partial.replace(path)
    return reference


@pytest.mark.parametrize("name", list(CLASSIC_NETS))
def test_classic_net_runs_in_opencv_like_onnxruntime(name, tmp_path):
    model = classic_net(name)
    x = classic_input(model)
    caffe = onnx_to_caffe(model)
    prototxt, caffemodel = write_caffe_files(caffe, tmp_path)
    reference = onnxruntime_reference(name, model, x)
    del model
    candidate = run_caffe(prototxt, caffemodel, [x], caffe.input_blob, caffe.outputs)
    candidate = {n: [np.reshape(candidate[n][0], np.shape(reference[n][0]))] for n in reference}
    parity = compare_outputs(reference, candidate, reference_name="onnxruntime", candidate_name="opencv-caffe",
                             atol=None)
    for output in parity.outputs:
        scale = float(np.abs(reference[output.name][0]).max())
        relative = output.max_abs / scale
        print(f"{name} {output.name} {output.shape}: max abs {output.max_abs:.3g} of scale {scale:.3g} "
              f"= {relative:.2e}, cosine {output.cosine:.9f}")
        assert np.all(np.isfinite(candidate[output.name][0]))
        assert relative <= FLOAT32_SCALED_ATOL, (name, output)
    assert all(o.top1_agreement in (None, 1.0) for o in parity.outputs)
