"""Mixed precision on the VIM3 NPU: uint8 with chosen layers in int16, compiled by the acuitylite release edgepad
installs (6.57.1: the README's NPU section lists the releases tried) and run in VeriSilicon's emulator.

The layer moved is the uint8 conversion's worst by single-layer cosine (the one `--quantize auto` moves first); the
uint8 conversion is the shared cached one (tests/support/npu_models.py), so this test compiles once.
"""
from __future__ import annotations

import json

import pytest

from support.npu_models import converted_npu_models
from support.paths import FACES, LEGACY_H5

pytestmark = pytest.mark.toolkit
# This test is about compiling and running a hybrid graph, not about this model's accuracy: on 13 held-out inputs
# one flipped decision is 8%, and moving one layer moved the decisions kept from 11 to 10 (measured)
LOOSE_GATES = {"min_cosine": 0.95, "min_agreement": 0.5}


def test_worst_layers_move_with_the_activation_fused_into_them():
    from edgepad.convert.vim3.target import worst_layer_units

    rows = [{"layer": "input_1", "op": "input", "cosine_single": 0.5},
            {"layer": "conv1", "op": "convolution", "cosine_single": 0.9, "fused_into": "relu1"},
            {"layer": "relu1", "op": "relun", "cosine_single": 0.99},
            {"layer": "conv2", "op": "convolution", "cosine_single": 0.95},
            {"layer": "fc", "op": "fullconnect", "cosine_single": 0.999}]
    assert worst_layer_units(rows) == [["conv2"], ["conv1", "relu1"], ["fc"]]


@pytest.fixture(scope="module")
def uint8_classifier(toolkit, faces_dir, tmp_path_factory):
    return converted_npu_models(faces_dir, tmp_path_factory.mktemp("npu_models"))["classifier"]


def test_a_hybrid_nbg_compiles_and_runs_in_the_emulator(uint8_classifier, faces_dir, tmp_path):
    from edgepad.convert.pipeline import ConvertOptions, convert_model
    from edgepad.convert.vim3.target import worst_layer_units
    from edgepad.convert.vim3.toolkit_env import ACUITYLITE_VERSION
    from edgepad.runtime.card import ModelCard

    from support.calibration_faces import calibration_faces_dir

    uint8 = json.loads((uint8_classifier.out / "report.json").read_text())
    uint8_rows = {row["layer"]: row for row in uint8["vim3"]["layers"]}
    moved = worst_layer_units(uint8["vim3"]["layers"])[0]
    out = tmp_path / "mixed"
    convert_model(ConvertOptions(model=LEGACY_H5 / "pad_mobilenet.h5", out=out, targets=("onnx", "vim3"),
                                 mean=(127.5,), std=(127.5,), calibration=calibration_faces_dir(faces_dir),
                                 calibration_count=64, sample_images=FACES, quantize="uint8", int16_layers=tuple(moved),
                                 **LOOSE_GATES))
    report = json.loads((out / "report.json").read_text())
    vim3 = report["vim3"]
    assert vim3["toolkit"] == "acuitylite" and vim3["toolkit_version"] == ACUITYLITE_VERSION == "6.57.1"
    assert vim3["int16_layers"] == moved and vim3["dtype_converters"] >= 2  # into int16 and back out
    rows = {row["layer"]: row for row in vim3["layers"]}
    for lid in moved:  # in int16 in the simulated graph, and its own quantization error is smaller than in uint8
        assert rows[lid]["quantization"]["qtype"] in ("i16", "int16")
        assert rows[lid]["cosine_single"] > uint8_rows[lid]["cosine_single"]
    untouched = next(lid for lid in uint8_rows if lid not in moved and rows.get(lid, {}).get("quantization"))
    assert rows[untouched]["quantization"]["qtype"] in ("u8", "uint8")

    nbg = out / "vim3" / "network_binary.nb"
    assert nbg.read_bytes()[:4] == b"VPMN"
    emulated = report["vim3_emulated"]  # edgepad's library on the hybrid NBG's case, in the emulator
    assert emulated["passed"] and emulated["inputs"] > 0
    assert emulated["vs_simulation"]["cosine"] >= 0.99, emulated["diagnosis"]
    assert emulated["estimated_board_time"]["ms_per_inference"] > 0
    card = ModelCard.load(out)
    assert card.targets.vim3.toolkit_version == "6.57.1" and card.targets.vim3.nbg_format == vim3["nbg"]["format"]
