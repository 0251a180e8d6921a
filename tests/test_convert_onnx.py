"""Keras .h5 -> ONNX: the written model.onnx computes what TensorFlow computes, checked independently here."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgepad.convert.pipeline import ConvertOptions, convert_model

import keras_models
from support.paths import FACES, LEGACY_H5

TOLERANCE = 1e-4  # the issue's bound for float32 Keras -> ONNX


def onnx_outputs(path: Path, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return [np.concatenate(column) for column in zip(*(session.run(None, {name: xi[None]}) for xi in x), strict=True)]


def save_h5(model, path: Path) -> Path:
    model.save(str(path))
    return path


def convert(h5: Path, out: Path, **options):
    return convert_model(ConvertOptions(model=h5, out=out, targets=("onnx",), **options))


@pytest.mark.parametrize("name", ["pad_mobilenet", "sequential_small"])
def test_keras2_files_match_tensorflow_2_4_goldens(name, tmp_path):
    """Files written by TF 2.4.4 (Keras 2): Keras 3 cannot load them, edgepad must, and match TF 2.4.4's outputs."""
    golden = np.load(LEGACY_H5 / f"{name}.golden.npz")
    result = convert(LEGACY_H5 / f"{name}.h5", tmp_path / "out")

    assert result.card.source.loader == "tf_keras"
    assert result.report.to_json()["onnx"]["passed"]
    (y,) = onnx_outputs(tmp_path / "out" / "model.onnx", golden["x"])
    assert y.shape == golden["y"].shape
    assert np.abs(y - golden["y"]).max() <= TOLERANCE
    assert (y.argmax(-1) == golden["y"].argmax(-1)).all()


def keras3_case(builder, tmp_path, **options):
    model = builder()
    h5 = save_h5(model, tmp_path / f"{model.name}.h5")
    result = convert(h5, tmp_path / "out", sample_images=FACES, **options)
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, (3, *model.input_shape[1:])).astype(np.float32)
    reference = np.asarray(model(x, training=False))
    return result, reference, x


@pytest.mark.parametrize("builder", [
    keras_models.mobilenet,
    keras_models.mobilenet_v2,
    keras_models.prelu_depthwise_embedding,
    keras_models.sequential_small,
], ids=lambda b: b.__name__)
def test_keras3_models_match_tensorflow(builder, tmp_path):
    result, reference, x = keras3_case(builder, tmp_path)

    assert result.card.source.loader == "keras"
    report = result.report.to_json()["onnx"]
    assert report["passed"] and report["max_abs"] <= TOLERANCE and report["cosine"] > 0.9999
    assert any(source.endswith("astronaut.png") for source in report["input_sources"])  # real images were used
    (y,) = onnx_outputs(tmp_path / "out" / "model.onnx", x)
    assert np.abs(y - reference).max() <= TOLERANCE
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["onnx"]["max_abs"] == report["max_abs"]


def test_mobilenet_v2_has_what_the_issue_names(tmp_path):
    """ReLU6 (Clip), residual Add and asymmetric zero padding survive into the graph and still match."""
    import onnx

    result, reference, x = keras3_case(keras_models.mobilenet_v2, tmp_path)
    graph = onnx.load(tmp_path / "out" / "model.onnx").graph
    ops = {node.op_type for node in graph.node}
    assert {"Clip", "Add"} <= ops
    pads = [list(n.attribute[0].ints) for n in graph.node if n.op_type == "Pad" and n.attribute] + [
        list(a.ints) for n in graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "pads"]
    assert any(p[: len(p) // 2] != p[len(p) // 2:] for p in pads), "expected an asymmetric padding"
    (y,) = onnx_outputs(tmp_path / "out" / "model.onnx", x)
    assert np.abs(y - reference).max() <= TOLERANCE


def test_nchw_layout_takes_channels_first(tmp_path):
    model = keras_models.sequential_small()
    h5 = save_h5(model, tmp_path / "seq.h5")
    result = convert(h5, tmp_path / "out", layout="nchw")

    assert result.card.targets.onnx.input_shape == [1, 3, 32, 32]
    x = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    (y,) = onnx_outputs(tmp_path / "out" / "model.onnx", x.transpose(0, 3, 1, 2))
    assert np.abs(y - np.asarray(model(x))).max() <= TOLERANCE


def test_custom_layer_through_custom_objects_file(tmp_path):
    objects_file = tmp_path / "my_layers.py"
    objects_file.write_text(textwrap.dedent("""
        import keras

        class ScaledTanh(keras.layers.Layer):
            def __init__(self, scale=1.0, **kwargs):
                super().__init__(**kwargs)
                self.scale = scale

            def call(self, x):
                return keras.ops.tanh(x) * self.scale

            def get_config(self):
                return {**super().get_config(), "scale": self.scale}
    """))
    import keras

    from edgepad.convert.onnx.keras_loading import load_custom_objects

    ScaledTanh = load_custom_objects(objects_file)["ScaledTanh"]
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = ScaledTanh(scale=2.5, name="scaled_tanh")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    h5 = save_h5(model, tmp_path / "custom.h5")

    result = convert(h5, tmp_path / "out", custom_objects=objects_file)
    x = np.random.default_rng(2).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    (y,) = onnx_outputs(tmp_path / "out" / "model.onnx", x)
    assert result.report.to_json()["onnx"]["passed"]
    assert np.abs(y - np.asarray(model(x))).max() <= TOLERANCE


@pytest.mark.parametrize("output_layer", ["embedding", "-2"])
def test_output_layer_cuts_the_training_head(output_layer, tmp_path):
    """As the seed does with layers[-2]: drop the classification head, export the embedding."""
    import keras

    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    embedding = keras.layers.Dense(16, name="embedding")(x)
    head = keras.layers.Dense(5, activation="softmax", name="head")(embedding)
    model = keras.Model(inputs, head)
    h5 = save_h5(model, tmp_path / "with_head.h5")

    result = convert(h5, tmp_path / "out", output_layer=output_layer)
    cut = keras.Model(inputs, embedding)
    x = np.random.default_rng(3).uniform(-1, 1, (2, 24, 24, 3)).astype(np.float32)
    (y,) = onnx_outputs(tmp_path / "out" / "model.onnx", x)
    assert y.shape == (2, 16)
    assert result.card.task == "embedding" and result.card.outputs[0].name == "embedding"
    assert np.abs(y - np.asarray(cut(x))).max() <= TOLERANCE


def test_open_input_dimensions_with_input_shape(tmp_path):
    model = keras_models.fully_convolutional()
    h5 = save_h5(model, tmp_path / "fcn.h5")
    result = convert(h5, tmp_path / "out", input_shape=(12, 20, 3))

    assert result.card.to_dict()["input"] == {"height": 12, "width": 20, "channels": 3, "dtype": "float32"}
    x = np.random.default_rng(4).uniform(-1, 1, (2, 12, 20, 3)).astype(np.float32)
    (y,) = onnx_outputs(tmp_path / "out" / "model.onnx", x)
    assert np.abs(y - np.asarray(model(x))).max() <= TOLERANCE


def test_model_card_records_preprocessing(tmp_path):
    result = convert(LEGACY_H5 / "sequential_small.h5", tmp_path / "out",
                     mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4), channel_order="bgr")
    card = json.loads((tmp_path / "out" / "edgepad.json").read_text())

    assert card == result.card.to_dict()
    assert card["preprocess"]["mean"] == pytest.approx([123.7, 116.3, 103.5])
    assert card["preprocess"]["std"] == pytest.approx([58.4, 57.1, 57.4])
    assert card["preprocess"]["channel_order"] == "bgr"
    assert card["task"] == "classifier" and card["labels"] == ["live", "spoof"]
    assert set(card["sha256"]) == {"model.onnx"}
