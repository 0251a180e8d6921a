"""The health check's tolerance follows the precision of the backend that ran on the board."""
from __future__ import annotations

import numpy as np

from edgepad.deploy.health import compare


def _uint8_round_trip(x: np.ndarray) -> np.ndarray:
    """What an asymmetric uint8 NPU output does to float values: 256 levels over the output's range."""
    low, high = float(x.min()), float(x.max())
    scale = (high - low) / 255.0
    return (np.round((x - low) / scale) * scale + low).astype(np.float32)


def test_quantized_backend_is_held_to_cosine_float_backend_to_max_abs():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(8, 2)).astype(np.float32)
    host = {"classifier/pad_prob": np.exp(logits) / np.exp(logits).sum(1, keepdims=True),
            "pnet/bbox_reg": rng.normal(size=(8, 19, 19, 4)).astype(np.float32)}
    board = {k: _uint8_round_trip(v) for k, v in host.items()}

    quantized = compare(host, board, "ksnn")
    assert quantized.passed and all(row["min_cosine"] is not None for row in quantized.outputs)
    float_check = compare(host, board, "onnxruntime")
    assert not float_check.passed and all(row["atol"] is not None for row in float_check.outputs)
    assert compare(host, {k: v.copy() for k, v in host.items()}, "onnxruntime").passed


def test_missing_model_output_fails():
    host = {"rnet/face_prob": np.ones((2, 2), np.float32), "rnet/bbox_reg": np.ones((2, 4), np.float32)}
    result = compare(host, {"rnet/face_prob": np.ones((2, 2), np.float32)}, "onnxruntime")
    assert not result.passed and "bbox_reg" in result.error


def test_npu_backend_holds_models_without_an_npu_binary_to_float_tolerance():
    rng = np.random.default_rng(1)
    host = {"classifier/pad_prob": rng.random((4, 2)).astype(np.float32),
            "pnet/face_prob": rng.random((4, 19, 19, 2)).astype(np.float32)}
    board = {k: _uint8_round_trip(v) for k, v in host.items()}
    cards = {"classifier": {"targets": {"onnx": {}, "vim3": {}}}, "pnet": {"targets": {"onnx": {}}}}
    result = compare(host, board, "ksnn", cards)
    by_model = {row["model"]: row for row in result.outputs}
    assert by_model["classifier"]["passed"] and by_model["classifier"]["min_cosine"] is not None
    assert not by_model["pnet"]["passed"] and by_model["pnet"]["atol"] is not None  # ran on the CPU: float


def test_quantized_classifier_is_held_to_its_cards_decision_gate():
    """Cosine alone lets a flipped live/spoof decision through; the card's min_agreement (default 0.99) does not."""
    live = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.52, 0.48], [0.1, 0.9], [0.2, 0.8], [0.3, 0.7],
                     [0.95, 0.05]], np.float32)
    board = live.copy()
    board[3] = [0.48, 0.52]  # one face near the threshold changes side: cosine stays high
    host = {"classifier/pad_prob": live}
    card = {"task": "classifier", "labels": ["live", "spoof"], "live_index": 0, "threshold": 0.5,
            "targets": {"vim3": {}}}
    strict = compare(host, {"classifier/pad_prob": board}, "ksnn", {"classifier": card})
    row = strict.outputs[0]
    assert row["cosine"] > 0.99 and row["decision_agreement"] == 7 / 8 and row["flipped_inputs"] == [3]
    assert not strict.passed and row["min_agreement"] == 0.99
    lenient = dict(card, targets={"vim3": {"gates": {"min_cosine": 0.9, "min_agreement": 0.8}}})
    assert compare(host, {"classifier/pad_prob": board}, "ksnn", {"classifier": lenient}).passed
