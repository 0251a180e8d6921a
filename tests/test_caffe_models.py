"""Keras -> ONNX -> Caffe on real architectures: the written prototxt/caffemodel, read by OpenCV 4's own Caffe
importer, computes what TensorFlow computes (and what TF 2.4.4 computed for the Keras 2 files)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgepad.convert.caffe.opencv_runner import load_caffe_net
from edgepad.convert.parity import FLOAT32_ATOL, compare_outputs
from edgepad.convert.pipeline import ConvertOptions, convert_model
from edgepad.errors import UnsupportedOpError

import keras_models
from support.paths import FACES, LEGACY_H5


def resnet_style(size=64):
    """Conv-BN-ReLU stem, 'same' max pooling, identity and projection shortcuts, GAP, softmax head."""
    import keras
    from keras import layers

    inputs = keras.Input((size, size, 3), name="image")
    x = layers.Conv2D(16, 7, strides=2, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for filters, stride in ((16, 1), (32, 2), (32, 1)):
        shortcut = x
        y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        y = layers.ReLU()(layers.BatchNormalization()(y))
        y = layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same", use_bias=False)(y))
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = layers.BatchNormalization()(layers.Conv2D(filters, 1, strides=stride, use_bias=False)(shortcut))
        x = layers.ReLU()(layers.Add()([shortcut, y]))
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(2, activation="softmax", name="pad_prob")(x)
    return keras_models.settle_batchnorm(keras.Model(inputs, out, name="resnet_style"), (size, size, 3))


def mobilefacenet_style(size=64):
    """PReLU (per-channel slopes), depthwise blocks, a global depthwise conv and a linear embedding."""
    import keras

    model = keras_models.prelu_depthwise_embedding(size)
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if isinstance(layer, keras.layers.PReLU):  # fresh slopes are 0 (plain ReLU): make them matter
            layer.set_weights([rng.uniform(0.05, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    return model


def keras_layer_zoo(size=32):
    """Keras 3 layers whose tf2onnx spelling needs more than one Caffe layer: UpSampling2D (nearest: Tile;
    bilinear: Resize), Conv2DTranspose 'same', squeeze-and-excitation Multiply, AveragePooling2D 'same',
    SeparableConv2D, PReLU without shared axes, Dense on a 4-D tensor, BatchNorm on the input and after Dense."""
    import keras
    from keras import layers

    inputs = keras.Input((size, size, 3))
    x = layers.BatchNormalization()(inputs)
    x = layers.LeakyReLU(0.1)(layers.Conv2D(8, 3, strides=2, padding="same")(x))
    x = layers.SeparableConv2D(12, 3, padding="same", activation="tanh")(x)
    excitation = layers.Conv2D(12, 1, activation="sigmoid")(layers.GlobalAveragePooling2D(keepdims=True)(x))
    x = layers.Multiply()([x, excitation])
    pooled = layers.AveragePooling2D(3, strides=2, padding="same")(x)
    x = layers.Concatenate()([
        x, layers.UpSampling2D(2, interpolation="nearest")(pooled),
        layers.UpSampling2D(2, interpolation="bilinear")(pooled),
        layers.Conv2DTranspose(6, 3, strides=2, padding="same")(pooled)])
    x = layers.MaxPooling2D(2)(layers.PReLU()(x))
    x = layers.Reshape((-1,))(layers.Dense(5)(layers.Dropout(0.3)(x)))
    x = layers.BatchNormalization()(layers.Dense(16, activation="relu")(x))
    model = keras.Model(inputs, layers.Dense(3, activation="softmax", name="scores")(x), name="layer_zoo")
    rng = np.random.default_rng(4)
    for layer in model.layers:
        if isinstance(layer, keras.layers.PReLU):
            layer.set_weights([rng.uniform(0.05, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    return keras_models.settle_batchnorm(model, (size, size, 3))


def mtcnn(net):
    from edgepad.convert.mtcnn_keras import build_net

    def build():
        return build_net(net, 37 if net == "pnet" else None)  # odd size: pooling rounds differently in Caffe
    build.__name__ = f"mtcnn_{net}"
    return build


MTCNN_NORMALISATION = {"mean": (127.5,), "std": (128.0,)}
MODELS = {
    "mobilenet": (lambda: keras_models.mobilenet(96), {}),
    "mobilenet_v2": (lambda: keras_models.mobilenet_v2(96), {}),
    "resnet_style": (resnet_style, {}),
    "mobilefacenet_style": (mobilefacenet_style, {}),
    "keras_layer_zoo": (keras_layer_zoo, {}),
    "mtcnn_pnet": (mtcnn("pnet"), MTCNN_NORMALISATION),
    "mtcnn_rnet": (mtcnn("rnet"), MTCNN_NORMALISATION),
    "mtcnn_onet": (mtcnn("onet"), MTCNN_NORMALISATION),
}


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """name -> (keras model, convert result, output folder); each model converted once per session."""
    cache: dict = {}

    def get(name):
        if name not in cache:
            builder, options = MODELS[name]
            folder = tmp_path_factory.mktemp(name)
            model = builder()
            model.save(folder / f"{name}.h5")
            result = convert_model(ConvertOptions(model=folder / f"{name}.h5", out=folder / "out",
                                                  targets=("onnx", "caffe"), sample_images=FACES, **options))
            cache[name] = (model, result, folder / "out")
        return cache[name]
    return get


def opencv_outputs(out: Path, x_nhwc: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Read the written files with cv2.dnn.readNetFromCaffe as the board's OpenCV would, from the card alone."""
    card = json.loads((out / "edgepad.json").read_text())["targets"]["caffe"]
    net = load_caffe_net(out / card["prototxt"], out / card["caffemodel"])
    results: dict[str, list[np.ndarray]] = {name: [] for name in card["output_names"]}
    for x in x_nhwc:
        net.setInput(np.ascontiguousarray(x.transpose(2, 0, 1)[None]), card["input"])
        for name, value in zip(card["output_names"], net.forward(card["outputs"])):
            results[name].append(np.array(value))
    return results


def keras_reference(model, x_nhwc: np.ndarray, names: list[str]) -> dict[str, list[np.ndarray]]:
    outputs = model(x_nhwc, training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {name: [np.asarray(o)[i:i + 1] for i in range(len(x_nhwc))] for name, o in zip(names, outputs)}


def nchw_to_keras_layout(values: dict, reference: dict) -> dict:
    """OpenCV returns NCHW blobs; a 4-D Keras output is NHWC."""
    converted = {}
    for name, arrays in values.items():
        ref_shape = np.shape(reference[name][0])
        converted[name] = [a if a.shape == ref_shape else a.transpose(0, 2, 3, 1) for a in arrays]
    return converted


@pytest.mark.parametrize("name", list(MODELS))
def test_opencv_runs_the_caffe_model_like_tensorflow(name, converted):
    model, result, out = converted(name)
    section = result.report["caffe"]
    assert section["passed"] and section["max_abs"] <= FLOAT32_ATOL and section["vs_keras"]["passed"]
    assert (out / "model.prototxt").is_file() and (out / "model.caffemodel").is_file()

    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 1, (3, *model.input_shape[1:])).astype(np.float32)
    card = result.card["targets"]["caffe"]
    reference = keras_reference(model, x, card["output_names"])
    candidate = nchw_to_keras_layout(opencv_outputs(out, x), reference)
    parity = compare_outputs(reference, candidate, reference_name="tensorflow", candidate_name="opencv-caffe")
    assert parity.passed, parity.to_json()
    assert card["input_shape"] == [1, model.input_shape[3], model.input_shape[1], model.input_shape[2]]
    assert card["layout"] == "nchw"
    assert dangling_tops(out) == set(card["outputs"])


def caffe_net(out: Path):
    from google.protobuf import text_format

    from edgepad.convert.caffe import caffe_pb2

    return text_format.Parse((out / "model.prototxt").read_text(), caffe_pb2.NetParameter())


def layer_types(out: Path) -> set[str]:
    return {layer.type for layer in caffe_net(out).layer}


def dangling_tops(out: Path) -> set[str]:
    """Tops no layer reads: Caffe readers (and the NPU toolkit) turn each into an extra network output."""
    net = caffe_net(out)
    read = {bottom for layer in net.layer for bottom in layer.bottom}
    return {top for layer in net.layer for top in layer.top if top not in read}


def test_mobilenet_v2_keeps_relu6_residuals_and_asymmetric_padding(converted):
    _, result, out = converted("mobilenet_v2")
    net = caffe_net(out)
    assert {"ReLU6", "Eltwise", "Convolution", "InnerProduct"} <= {layer.type for layer in net.layer}
    # Keras pads stride-2 convs at the bottom/right only. Caffe pads symmetrically: those convs pad 1 on both
    # sides and carry one zero tap at the top/left, so no extra layers are needed.
    stride2 = [l.convolution_param for l in net.layer if l.type == "Convolution" and l.convolution_param.stride_h == 2]
    assert stride2 and all((p.kernel_h, p.kernel_w, p.pad_h, p.pad_w) == (4, 4, 1, 1) for p in stride2)


def test_mtcnn_nets_keep_prelu_and_permute(converted):
    for net in ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet"):
        _, result, out = converted(net)
        types = layer_types(out)
        assert "PReLU" in types and "Pooling" in types, (net, types)
        if net != "mtcnn_pnet":
            assert "Permute" in types and "InnerProduct" in types


@pytest.mark.parametrize("name", ["pad_mobilenet", "sequential_small"])
def test_keras2_files_match_tensorflow_2_4_goldens_in_opencv(name, tmp_path):
    golden = np.load(LEGACY_H5 / f"{name}.golden.npz")
    result = convert_model(ConvertOptions(model=LEGACY_H5 / f"{name}.h5", out=tmp_path / "out",
                                          targets=("onnx", "caffe")))
    assert result.report["caffe"]["passed"]
    outputs = opencv_outputs(tmp_path / "out", golden["x"].astype(np.float32))
    (y,) = [np.concatenate(v) for v in outputs.values()]
    assert y.shape == golden["y"].shape
    assert np.abs(y - golden["y"]).max() <= FLOAT32_ATOL
    assert (y.argmax(-1) == golden["y"].argmax(-1)).all()


def unsupported_model(path: Path) -> Path:
    """Two activations Caffe has no layer for (SELU, log-softmax) between ordinary layers."""
    import keras
    from keras import layers

    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, activation="selu", name="conv_selu")(inputs)
    x = layers.Conv2D(4, 3, activation="log_softmax", name="conv_log_softmax")(x)
    x = layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, layers.Dense(2, activation="softmax")(x)).save(path)
    return path


def test_unsupported_ops_are_all_named_in_one_error_and_nothing_is_written(tmp_path):
    h5 = unsupported_model(tmp_path / "elu.h5")
    out = tmp_path / "out"
    with pytest.raises(UnsupportedOpError) as error:
        convert_model(ConvertOptions(model=h5, out=out, targets=("onnx", "caffe")))
    message = str(error.value)
    assert "Selu node" in message and "conv_selu" in message
    assert "LogSoftmax node" in message and "conv_log_softmax" in message
    assert "\n" not in message
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["elu.h5"]  # no staging folder left behind


def test_cli_converts_to_caffe_and_reports_json(tmp_path):
    from click.testing import CliRunner

    from edgepad.cli import cli

    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["convert", str(LEGACY_H5 / "sequential_small.h5"), "-o", str(out),
                                      "--to", "onnx,caffe", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    caffe = report["caffe"]
    assert caffe["passed"] and caffe["max_abs"] <= FLOAT32_ATOL
    assert caffe["vs_keras"]["passed"] and caffe["files"] == ["model.prototxt", "model.caffemodel"]
    card = json.loads((out / "edgepad.json").read_text())
    assert card["targets"]["caffe"]["input"] == "input"
    assert card["targets"]["caffe"]["input_shape"] == [1, 3, 28, 28]
    assert {"model.prototxt", "model.caffemodel"} <= set(card["sha256"])


def test_cli_unsupported_op_is_one_line_and_writes_nothing(tmp_path):
    from click.testing import CliRunner

    from edgepad.cli import cli

    h5 = unsupported_model(tmp_path / "elu.h5")
    result = CliRunner().invoke(cli, ["convert", str(h5), "-o", str(tmp_path / "out"), "--to", "onnx,caffe"])
    assert result.exit_code != 0
    lines = [line for line in result.output.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "conv_selu" in lines[0] and "conv_log_softmax" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.toolkit
@pytest.mark.parametrize("name", ["mtcnn_onet", "mobilefacenet_style", "resnet_style"])
def test_npu_toolkit_caffe_loader_reads_the_same_network(name, converted, tmp_path, toolkit):
    """A second, independent Caffe reader: acuitylite's CaffeLoader, run in float inside the toolkit environment.
    (ReLU6 nets are left out: acuitylite 6.57.1 reads Caffe's ReLU6 as a plain ReLU, see the report.)"""
    from edgepad.convert.onnx.onnx_runner import run_onnx
    from edgepad.convert.vim3.toolkit_env import run_worker

    env = toolkit
    _, result, out = converted(name)
    card = result.card["targets"]["caffe"]
    rng = np.random.default_rng(5)
    inputs = [rng.uniform(-1, 1, card["input_shape"]).astype(np.float32) for _ in range(2)]
    np.save(tmp_path / "inputs.npy", np.stack(inputs))
    answer = run_worker(env, "caffe", {"prototxt": str(out / card["prototxt"]), "caffemodel": str(out / card["caffemodel"]),
                                       "inputs": str(tmp_path / "inputs.npy"), "out_dir": str(tmp_path)},
                        log_name=f"test-caffe-{name}")
    with np.load(answer["arrays"]) as arrays:
        toolkit = [arrays[str(i)] for i in range(len(answer["outputs"]))]
    assert len(toolkit) == len(card["outputs"])  # no extra outputs from helper layers
    # acuitylite names and orders outputs itself: pair each ONNX output with the toolkit output it matches
    for output, values in run_onnx(str(out / "model.nchw.onnx"), inputs).items():
        reference = np.stack(values)
        differences = [np.abs(t.reshape(reference.shape) - reference).max() for t in toolkit if t.size == reference.size]
        assert differences and min(differences) <= FLOAT32_ATOL, (output, differences)


def test_caffe_target_fails_naming_the_output_beyond_tolerance(tmp_path):
    """The real target on a real model, with a tolerance below float32 summation noise: OpenCV's sums differ
    from onnxruntime's in the last bits, so the check must fail and name the output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgepad.convert.caffe.onnx_to_caffe import caffe_target
    from edgepad.convert.onnx.onnx_runner import run_onnx
    from edgepad.convert.pipeline import ConvertContext
    from edgepad.errors import ParityError
    from edgepad.progress import Steps

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["features"], kernel_shape=[5, 5], pads=[2, 2, 2, 2])],
        "noise", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 16, 12, 12])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 32, 12, 12])],
        [numpy_helper.from_array(rng.standard_normal((32, 16, 5, 5)).astype(np.float32), "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx_path = tmp_path / "model.nchw.onnx"
    onnx.save(proto, onnx_path)
    images = [rng.standard_normal((12, 12, 16)).astype(np.float32) for _ in range(2)]
    ctx = ConvertContext(ConvertOptions(model=tmp_path / "m.h5", out=tmp_path / "out", atol=1e-12), tmp_path,
                         {"name": "noise", "targets": {}}, Steps(quiet=True), onnx_path, images, ["a", "b"], {})
    ctx.keras_outputs = run_onnx(str(onnx_path), ctx.inputs_as("nchw"))
    with pytest.raises(ParityError) as error:
        caffe_target(ctx)
    assert "output 'features'" in str(error.value) and "max abs <= 1e-12" in str(error.value)
    assert "caffe" not in ctx.card["targets"]
