"""The model card (runtime/card.py): old cards still read, unknown fields survive, newer versions are refused."""
from __future__ import annotations

import json

import pytest

from edgepad.runtime.card import CARD_VERSION, CardError, ModelCard, NpuTensor, Vim3Entry

from support.paths import FIXTURES

# written by edgepad before the card had a class (`edgepad_card: 1`, no `card_version`): MTCNN's PNet
PNET_V1 = FIXTURES / "cards" / "pnet_v1.json"


def test_a_card_written_before_card_version_reads_as_version_1_and_round_trips():
    original = json.loads(PNET_V1.read_text())
    card = ModelCard.load(PNET_V1)
    assert card.card_version == CARD_VERSION == 1
    assert (card.input.height, card.input.width, card.input.channels) == (48, 48, 3)
    assert card.preprocess.mean == [127.5] * 3 and card.preprocess.std == [128.0] * 3
    assert card.targets.names() == ["onnx", "onnx_nchw", "onnx_open", "caffe"]
    assert card.targets.onnx_open.input_shape == [None, None, None, 3] and card.mtcnn.net == "pnet"
    assert card.targets.caffe.outputs and card.targets.caffe.prototxt == "model.prototxt"

    written = card.to_dict()
    assert written.pop("card_version") == 1
    original.pop("edgepad_card")
    original["source"].pop("output_layer")  # None: left out
    assert written == original


def test_fields_this_edgepad_does_not_know_survive_a_round_trip(tmp_path):
    data = json.loads(PNET_V1.read_text())
    data["targets"]["onnx"]["opset"] = 13  # a field a newer edgepad adds to a known target
    data["targets"]["rknn"] = {"file": "model.rknn", "quantized": True}  # a target it does not know
    data["calibration"] = {"images": 32}  # a top-level section
    data["preprocess"]["crop"] = "center"
    ModelCard.from_dict(data).save(tmp_path)
    again = json.loads((tmp_path / "edgepad.json").read_text())
    assert again["targets"]["onnx"]["opset"] == 13 and again["targets"]["rknn"] == data["targets"]["rknn"]
    assert again["calibration"] == {"images": 32} and again["preprocess"]["crop"] == "center"


def test_the_vim3_entry_and_its_per_size_models_are_typed():
    data = json.loads(PNET_V1.read_text())
    data["targets"]["vim3"] = {
        "platform": "ONNX", "target": "VIPNANOQI_PID0X88", "pid": "0x88",
        "input": {"name": "input", "shape": [1, 3, 12, 12], "dtype": "uint8", "scale": 0.0078, "zero_point": 128},
        "npu_library": {"case": "pnet", "library": None, "sources": ["vim3/vnn_pnet.c"]},
        "sizes": {"12x12": {"nb": "vim3/12x12.nb", "library": "vim3/libnn_12x12.so",
                            "outputs": [{"name": "face_prob", "shape": [1, 1, 1, 2], "fl": 7}]}},
    }
    card = ModelCard.from_dict(data)
    vim3 = card.targets.vim3
    assert isinstance(vim3, Vim3Entry) and isinstance(vim3.input, NpuTensor) and vim3.input.zero_point == 128
    assert vim3.sizes["12x12"].nb == "vim3/12x12.nb" and vim3.sizes["12x12"].outputs[0].fl == 7
    assert vim3.npu_library.case == "pnet" and vim3.npu_library.library is None
    assert card.to_dict()["targets"]["vim3"]["sizes"] == data["targets"]["vim3"]["sizes"]


def test_a_card_from_a_newer_edgepad_is_one_line_naming_the_file_and_the_fix(tmp_path):
    data = json.loads(PNET_V1.read_text())
    data["card_version"] = CARD_VERSION + 1
    path = tmp_path / "edgepad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CardError) as error:
        ModelCard.load(tmp_path)
    message = str(error.value)
    assert message.startswith(str(path)) and f"version {CARD_VERSION + 1} is newer" in message
    assert "update edgepad" in message and "convert the model again" in message and "\n" not in message


@pytest.mark.parametrize("change, expected", [
    (lambda d: d.pop("input"), "edgepad.json: missing input"),
    (lambda d: d["input"].update(height=0), "input.height: 0 is not a positive whole number"),
    (lambda d: d["preprocess"].update(channel_order="gbr"),
     "preprocess.channel_order: 'gbr' is none of rgb, bgr, gray, rgba, bgra"),
    (lambda d: d["targets"]["onnx"].pop("file"), "targets.onnx: missing file"),
    (lambda d: d["targets"].update(vim3=[]), "targets.vim3: expected an object, found list"),
])
def test_a_broken_card_names_the_key(tmp_path, change, expected):
    data = json.loads(PNET_V1.read_text())
    change(data)
    (tmp_path / "edgepad.json").write_text(json.dumps(data))
    with pytest.raises(CardError) as error:
        ModelCard.load(tmp_path)
    assert expected in str(error.value) and str(tmp_path) in str(error.value)


def test_the_runtime_refuses_a_newer_card_in_one_line(tmp_path):
    from edgepad.runtime.backends import BackendError, load_model

    data = json.loads(PNET_V1.read_text())
    data["card_version"] = CARD_VERSION + 1
    (tmp_path / "edgepad.json").write_text(json.dumps(data))
    with pytest.raises(BackendError, match="is newer than this edgepad reads"):
        load_model(str(tmp_path), "onnxruntime")


def test_the_tflite_entry_ksnn_call_head_and_source_layout_are_typed():
    data = json.loads(PNET_V1.read_text())
    data.update({"task": "classifier", "head": "sigmoid", "labels": ["spoof", "live"], "live_index": 1})
    data["source"]["layout"] = {"value": "nchw", "from": "graph"}
    data["targets"]["tflite"] = {"file": "model.tflite", "layout": "nhwc", "io_dtype": "uint8", "kernels": "int8",
                                 "input": {"dtype": "uint8", "scale": 0.0078, "zero_point": 128,
                                           "shape": [1, 12, 12, 3]}}
    data["targets"]["vim3"] = {"nbg_format": "0x0001000f", "ksnn": {
        "platform": "ONNX", "reorder": "2 1 0", "channel_order": "RGB", "layout": "chw", "mean": None, "std": None}}
    card = ModelCard.from_dict(data)
    assert card.head == "sigmoid" and card.live_class == 1 and card.source.layout["from"] == "graph"
    assert card.targets.tflite.input.zero_point == 128 and "tflite" in card.targets
    assert card.targets.vim3.ksnn.reorder == "2 1 0" and card.targets.vim3.nbg_format == "0x0001000f"
    again = card.to_dict()
    for key in ("head", "labels", "live_index"):
        assert again[key] == data[key], key
    assert again["source"]["layout"] == data["source"]["layout"]
    assert again["targets"]["tflite"] == data["targets"]["tflite"]
    assert again["targets"]["vim3"] == data["targets"]["vim3"]  # mean/std null (raw pixels) written out


def test_an_embedding_card_keeps_its_match_threshold_and_any_channel_order():
    data = json.loads(PNET_V1.read_text())
    data.update({"task": "embedding", "match_threshold": 1.1})
    data["preprocess"]["channel_order"] = "gray"
    card = ModelCard.from_dict(data)
    assert card.match_threshold == 1.1 and card.preprocess.channel_order == "gray"
    data["preprocess"]["channel_order"] = "yuv"
    with pytest.raises(CardError, match="channel_order: 'yuv'"):
        ModelCard.from_dict(data)
