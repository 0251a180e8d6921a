"""Models as people bring them: .onnx (hand-built NCHW, tf2onnx NHWC), Keras 3 .keras, SavedModel folders.

Each converts `--to onnx,caffe`; the references are independent of edgepad: onnxruntime on the file as given,
or the Keras model itself, against OpenCV's Caffe reader on the written Caffe files.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from edgepad.cli import cli
from edgepad.convert.pipeline import ConvertOptions, convert_model
from edgepad.errors import ShapeError, UsageError

TOLERANCE = 1e-4
HEAD_SCALE = 0.05  # a small classifier head: the faces' P(live) spread out instead of saturating


def ort_outputs(model, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model if isinstance(model, (bytes, str)) else model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def caffe_outputs(out: Path, x_nchw: np.ndarray) -> np.ndarray:
    net = cv2.dnn.readNetFromCaffe(str(out / "model.prototxt"), str(out / "model.caffemodel"))
    net.setInput(x_nchw)
    return net.forward().reshape(len(x_nchw), -1)


def nchw_conv_net(batch="N", height=20, width=24, channels=3, input_name="image", head_scale=1.0):
    """A torch-free stand-in for a PyTorch export: Conv, ReLU, pooling, Gemm, Softmax; NCHW, open batch."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)

    def init(name, *shape):
        scale = 0.5 * (head_scale if name in ("w3", "b3") else 1.0)
        return numpy_helper.from_array(rng.normal(0, scale, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", [input_name, "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w3", "b3"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["prob"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "torchlike",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, channels, height, width])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [batch, 2])],
        [init("w1", 8, channels, 3, 3), init("b1", 8), init("w2", 6, 8, 3, 3), init("b2", 6), init("w3", 2, 6),
         init("b3", 2)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="test")


def tiny_keras(shape=(24, 20, 3), name="tiny"):
    import keras
    from keras import layers

    keras.utils.set_random_seed(5)
    return keras.Sequential([
        keras.Input(shape),
        layers.Conv2D(6, 3, padding="same", activation="relu"),
        layers.DepthwiseConv2D(3, strides=2, padding="same"),
        layers.BatchNormalization(),
        layers.ReLU(6.0),
        layers.GlobalAveragePooling2D(),
        layers.Dense(2, activation="softmax"),
    ], name=name)


def convert(model: Path, out: Path, **options):
    return convert_model(ConvertOptions(model=model, out=out, targets=("onnx", "caffe"), **options))


def probes(shape, count=3, seed=11) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (count, *shape)).astype(np.float32)


def assert_passed(result, reference_prefix: str):
    for target in ("onnx", "caffe"):
        section = result.report[target]
        assert section["passed"] and section["max_abs"] <= TOLERANCE, (target, section)
    assert result.report["onnx"]["reference"].startswith(reference_prefix)


def test_onnx_nchw_with_an_open_batch_converts_against_onnxruntime_on_the_original(tmp_path):
    import onnx

    path = tmp_path / "torchlike.onnx"
    onnx.save(nchw_conv_net(), str(path))
    result = convert(path, tmp_path / "out")

    assert_passed(result, "onnxruntime:torchlike.onnx")
    assert result.card["source"]["layout"] == {"value": "nchw", "from": "graph"} and result.card["name"] == "torchlike"
    assert result.card["input"] == {"height": 20, "width": 24, "channels": 3, "dtype": "float32"}
    assert result.card["targets"]["onnx"]["input_shape"] == [1, 3, 20, 24]
    assert "onnx_nchw" not in result.card["targets"]  # already NCHW: one graph serves every target
    x = probes((3, 20, 24))
    original = np.concatenate([ort_outputs(str(path), xi[None]) for xi in x])
    written = np.concatenate([ort_outputs(str(tmp_path / "out" / "model.onnx"), xi[None]) for xi in x])
    assert np.abs(written - original).max() <= TOLERANCE
    assert np.abs(caffe_outputs(tmp_path / "out", x) - original).max() <= TOLERANCE


def test_onnx_open_spatial_dims_need_input_shape(tmp_path):
    import onnx

    path = tmp_path / "open.onnx"
    onnx.save(nchw_conv_net(height="H", width="W"), str(path))
    result = CliRunner().invoke(cli, ["convert", str(path), "-o", str(tmp_path / "no")])
    assert result.exit_code != 0
    (line,) = result.output.strip().splitlines()[-1:]
    assert str(path) in line and "--input-shape H,W,C" in line and "Traceback" not in result.output
    assert not (tmp_path / "no").exists()

    result = convert(path, tmp_path / "out", input_shape=(16, 28, 3))
    assert_passed(result, "onnxruntime:open.onnx")
    assert result.card["targets"]["onnx"]["input_shape"] == [1, 3, 16, 28]
    x = probes((3, 16, 28))
    original = np.concatenate([ort_outputs(str(path), xi[None]) for xi in x])
    assert np.abs(caffe_outputs(tmp_path / "out", x) - original).max() <= TOLERANCE
    with pytest.raises(ShapeError, match="does not fit"):
        convert(path, tmp_path / "bad", input_shape=(16, 28, 1))


def test_tf2onnx_nhwc_export_gets_an_nchw_graph_for_caffe(tmp_path):
    import tensorflow as tf
    import tf2onnx

    model = tiny_keras()
    spec = [tf.TensorSpec((None, 24, 20, 3), tf.float32, name="x")]  # an open batch, as tf2onnx's CLI writes
    proto, _ = tf2onnx.convert.from_function(tf.function(lambda x: model(x, training=False)), spec, opset=13)
    path = tmp_path / "earlier_run.onnx"
    path.write_bytes(proto.SerializeToString())
    result = convert(path, tmp_path / "out")

    assert_passed(result, "onnxruntime:earlier_run.onnx")
    assert result.card["source"]["layout"] == {"value": "nhwc", "from": "graph"}
    assert result.card["targets"]["onnx"]["input_shape"] == [1, 24, 20, 3]
    assert result.card["targets"]["onnx_nchw"]["input_shape"] == [1, 3, 24, 20]
    x = probes((24, 20, 3))
    keras_y = np.asarray(model(x, training=False))
    assert np.abs(caffe_outputs(tmp_path / "out", x.transpose(0, 3, 1, 2)) - keras_y).max() <= TOLERANCE


def test_onnx_layout_that_cannot_be_told_needs_layout(tmp_path):
    import onnx

    path = tmp_path / "square.onnx"
    onnx.save(nchw_conv_net(height=3, width=3), str(path))  # (N, 3, 3, 3): either way round
    with pytest.raises(UsageError, match="--layout nchw or --layout nhwc"):
        convert(path, tmp_path / "no")
    result = convert(path, tmp_path / "out", layout="nchw")
    assert result.card["source"]["layout"] == {"value": "nchw", "from": "--layout"}
    assert result.report["onnx"]["source_layout"] == {"value": "nchw", "from": "--layout"}
    assert result.report["caffe"]["passed"]


@pytest.mark.parametrize("content", [b"", b"not a protobuf \xff\xfe at all"], ids=["empty", "garbage"])
def test_unreadable_onnx_is_one_line_naming_the_file(tmp_path, content):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    result = CliRunner().invoke(cli, ["convert", str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert str(path) in lines[-1] and ("export it again" in lines[-1] or "checker" in lines[-1])
    assert not (tmp_path / "out").exists()


def test_onnx_input_refuses_the_keras_only_tflite_target(tmp_path):
    import onnx

    path = tmp_path / "torchlike.onnx"
    onnx.save(nchw_conv_net(), str(path))
    with pytest.raises(UsageError, match="--to tflite"):
        convert_model(ConvertOptions(model=path, out=tmp_path / "o", targets=("onnx", "tflite")))


def save_keras3(model, folder: Path) -> Path:
    model.save(str(folder / "kfile.keras"))
    return folder / "kfile.keras"


def export_saved_model(model, folder: Path) -> Path:
    model.export(str(folder / "exported_model"))
    return folder / "exported_model"


@pytest.mark.parametrize("save, kind", [(save_keras3, "keras"), (export_saved_model, "saved_model")],
                         ids=["keras3_file", "saved_model"])
def test_keras3_file_and_saved_model_convert_against_keras(tmp_path, save, kind):
    model = tiny_keras(name=kind)
    result = convert(save(model, tmp_path), tmp_path / "out")

    assert_passed(result, "keras")
    assert result.card["source"]["kind"] == kind
    if kind == "keras":
        assert result.card["source"]["keras_version"].startswith("3")
    x = probes((24, 20, 3))
    keras_y = np.asarray(model(x, training=False))
    onnx_y = np.concatenate([ort_outputs(str(tmp_path / "out" / "model.onnx"), xi[None]) for xi in x])
    assert np.abs(onnx_y - keras_y).max() <= TOLERANCE
    assert np.abs(caffe_outputs(tmp_path / "out", x.transpose(0, 3, 1, 2)) - keras_y).max() <= TOLERANCE


def test_folder_without_saved_model_and_bad_keras_file_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"PK not really")
    for path, fix in ((tmp_path / "empty", "saved_model.pb"), (bad, "model.save('model.keras')")):
        result = CliRunner().invoke(cli, ["convert", str(path), "-o", str(tmp_path / "out")])
        assert result.exit_code != 0 and "Traceback" not in result.output
        assert str(path) in result.output.strip().splitlines()[-1] and fix in result.output
    assert not (tmp_path / "out").exists()


def test_report_on_disk_names_the_onnx_reference(tmp_path):
    import onnx

    path = tmp_path / "torchlike.onnx"
    onnx.save(nchw_conv_net(), str(path))
    convert_model(ConvertOptions(model=path, out=tmp_path / "out", targets=("onnx",)))
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["onnx"]["reference"] == "onnxruntime:torchlike.onnx" and report["onnx"]["passed"]


def test_onnx_classifier_bundles_and_scores_faces_like_onnxruntime_on_the_original(tmp_path, faces_dir,
                                                                                   detector_models):
    """A PyTorch-style NCHW export ('input.1', non-square) converted, bundled and run on t1.jpg: each face's live is
    onnxruntime's on the original file, fed the aligned crop preprocessed here (RGB, (x - 127.5) / 127.5, CHW)."""
    import onnx

    from edgepad.deploy.bundle import BundleOptions, build_bundle
    from edgepad.runtime.align import align_face

    height, width = 64, 56
    path = tmp_path / "exported.onnx"
    onnx.save(nchw_conv_net(height=height, width=width, input_name="input.1", head_scale=HEAD_SCALE), str(path))
    result = convert(path, tmp_path / "out")
    assert result.card["task"] == "classifier" and result.card["targets"]["onnx"]["input"] == "input.1"
    bundle = tmp_path / "bundle"
    build_bundle(BundleOptions(out=bundle, classifier=result.out, detector=detector_models))
    image = cv2.imread(str(faces_dir / "t1.jpg"))
    for backend in ("onnxruntime", "opencv"):  # model.onnx, and the Caffe files
        ran = CliRunner().invoke(cli, ["run", str(faces_dir / "t1.jpg"), "--bundle", str(bundle), "--backend", backend,
                                       "--json"])
        assert ran.exit_code == 0, ran.output
        faces = json.loads(ran.stdout.strip().splitlines()[-1])["faces"]
        assert len(faces) == 6
        crops = [align_face(image, np.asarray(face["landmarks"]), height) for face in faces]
        rgb = [cv2.cvtColor(cv2.resize(c, (width, height)), cv2.COLOR_BGR2RGB) for c in crops]
        x = [((c.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None] for c in rgb]
        expected = np.array([ort_outputs(str(path), xi)[0, 0] for xi in x])
        live = np.array([face["live"] for face in faces])
        assert np.ptp(expected) > 0.01, expected  # the faces score differently: a wrong crop or layout would show
        assert np.abs(live - expected).max() <= 2e-3, (backend, live, expected)  # landmarks are rounded in the JSON
