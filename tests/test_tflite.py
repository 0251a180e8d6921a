"""The tflite target and backend: an integer TFLite model for Mesa's Teflon delegate, judged on held-out faces."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgepad.cli import cli
from edgepad.convert.heldout import split_held_out
from edgepad.convert.parity import QUANTIZED_SCORE_ATOL, cosine_similarity

from support.calibration_faces import held_out_face_dirs
from support.paths import LEGACY_H5

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def held_out_faces(faces_dir):
    return held_out_face_dirs(faces_dir)


@pytest.fixture(scope="session")
def tflite_classifier(tmp_path_factory, held_out_faces):
    calibration, evaluation = held_out_faces
    out = tmp_path_factory.mktemp("tflite") / "pad"
    result = CliRunner().invoke(cli, ["convert", str(LEGACY_H5 / "pad_mobilenet.h5"), "-o", str(out), "--to",
                                      "onnx,tflite", "--calibration", str(calibration), "--eval-images",
                                      str(evaluation), "--json"])
    assert result.exit_code == 0, result.output
    return out


def test_tflite_model_takes_and_gives_integers(tflite_classifier):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_classifier / "model.tflite"))
    (model_input,) = interpreter.get_input_details()
    (model_output,) = interpreter.get_output_details()
    assert model_input["dtype"] == np.uint8 and model_output["dtype"] == np.uint8
    # fully integer: no float tensor anywhere (int8 weights and activations, int32 biases and shapes)
    floats = [t["name"] for t in interpreter.get_tensor_details() if np.dtype(t["dtype"]).kind == "f"]
    assert not floats
    card = json.loads((tflite_classifier / "edgepad.json").read_text())
    assert card["targets"]["tflite"]["input"]["dtype"] == "uint8"


def test_tflite_report_judges_on_held_out_faces(tflite_classifier, held_out_faces):
    calibration, evaluation = held_out_faces
    section = json.loads((tflite_classifier / "report.json").read_text())["tflite"]
    assert section["passed"] and section["decision_agreement"] >= 0.9
    assert section["cosine"] >= 0.98 and section["cosine_min"] <= section["cosine"]
    assert set(section["eval_sources"]) == {str(p) for p in sorted(evaluation.glob("*.png"))}
    assert set(section["calibration_sources"]) <= {str(p) for p in calibration.glob("*.png")}
    assert not set(section["calibration_sources"]) & set(section["eval_sources"])
    table = {row["op"]: row["teflon"] for row in section["teflon"]["table"]}
    assert table["CONV_2D"] and table["DEPTHWISE_CONV_2D"] and not table["SOFTMAX"]
    assert section["teflon"]["on_cpu_ops"] == sorted(op for op, on_npu in table.items() if not on_npu)


def test_tflite_backend_reproduces_tensorflow_244(tflite_classifier):
    """The fixture's own outputs, computed by the TensorFlow 2.4.4 that wrote the file, as the reference."""
    from edgepad.runtime.backends import load_model

    golden = np.load(LEGACY_H5 / "pad_mobilenet.golden.npz")
    model = load_model(tflite_classifier, "tflite")
    outputs = model.run(golden["x"].astype(np.float32))[model.output_names[0]]
    cosines = [cosine_similarity(a, b) for a, b in zip(golden["y"], outputs, strict=True)]
    assert min(cosines) >= 0.95, cosines
    assert np.abs(outputs - golden["y"]).max() <= QUANTIZED_SCORE_ATOL


def test_run_scores_the_six_faces_on_tflite(tflite_classifier, faces_dir):
    runs = {}
    for backend in ("tflite", "onnxruntime"):
        result = CliRunner().invoke(cli, ["run", str(faces_dir / "t1.jpg"), "--classifier", str(tflite_classifier),
                                          "--backend", backend, "--json"])
        assert result.exit_code == 0, result.output
        runs[backend] = json.loads(result.stdout.strip().splitlines()[-1])["faces"]
    assert len(runs["tflite"]) == len(runs["onnxruntime"]) == 6
    for quantized, float_face in zip(runs["tflite"], runs["onnxruntime"], strict=True):
        assert quantized["box"] == float_face["box"]  # the detector runs on the CPU backend in both
        assert abs(quantized["live"] - float_face["live"]) <= QUANTIZED_SCORE_ATOL


def test_tflite_gate_fails_in_one_line_and_writes_nothing(tmp_path, held_out_faces):
    calibration, evaluation = held_out_faces
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["convert", str(LEGACY_H5 / "pad_mobilenet.h5"), "-o", str(out), "--to",
                                      "onnx,tflite", "--calibration", str(calibration), "--eval-images",
                                      str(evaluation), "--min-cosine", "0.99999"])
    assert result.exit_code != 0
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "tflite" in line and "--min-cosine 0.99999" in line and "held-out" in line
    assert not out.exists()


def test_tflite_needs_calibration_images(tmp_path):
    result = CliRunner().invoke(cli, ["convert", str(LEGACY_H5 / "sequential_small.h5"), "-o", str(tmp_path / "o"),
                                      "--to", "tflite"])
    assert result.exit_code != 0 and "--calibration" in result.stderr
    assert not (tmp_path / "o").exists()


def test_held_out_split_keeps_videos_apart(tmp_path):
    videos = [tmp_path / f"video{i}" / f"{j}.png" for i in range(6) for j in range(3)]
    calibration, evaluation = split_held_out(videos)
    assert {p.parent.name for p in evaluation} == {"video4"}
    assert not {p.parent for p in calibration} & {p.parent for p in evaluation}
    flat = [tmp_path / f"{j}.png" for j in range(10)]
    calibration, evaluation = split_held_out(flat)
    assert [p.name for p in evaluation] == ["4.png", "9.png"] and len(calibration) == 8


def test_tflite_backend_on_the_board_python(board_python, tflite_classifier, tmp_path):
    """tflite-runtime 2.14 on Python 3.8 (the board's) gives the host interpreter's outputs on the same faces."""
    from edgepad.runtime.backends import load_model

    golden = np.load(LEGACY_H5 / "pad_mobilenet.golden.npz")
    np.save(tmp_path / "x.npy", golden["x"].astype(np.float32))
    code = ("import sys, numpy as np; sys.path.insert(0, sys.argv[1]); "
            "from runtime.backends import load_model; m = load_model(sys.argv[2], 'tflite'); "
            "import runtime.backends.tflite_backend as t; assert 'tflite_runtime' in t.interpreter_module().__name__; "
            "np.save(sys.argv[4], m.run(np.load(sys.argv[3]))[m.output_names[0]])")
    runtime_parent = Path(__import__("edgepad.runtime", fromlist=["x"]).__file__).resolve().parents[1]
    completed = subprocess.run([str(board_python), "-c", code, str(runtime_parent), str(tflite_classifier),
                                str(tmp_path / "x.npy"), str(tmp_path / "y.npy")], capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    host = load_model(tflite_classifier, "tflite")
    expected = host.run(golden["x"].astype(np.float32))[host.output_names[0]]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-6)


def test_deploy_of_a_tflite_bundle_checks_the_board_against_the_host_interpreter(board, tflite_classifier, tmp_path):
    from edgepad.deploy.bundle import BundleOptions, build_bundle

    bundle = tmp_path / "tflite_bundle"
    build_bundle(BundleOptions(bundle, tflite_classifier))
    assert (bundle / "reference" / "outputs.tflite.npz").is_file()
    ran = subprocess.run([str(Path(sys.executable).with_name("edgepad")), "deploy", str(bundle), "--backend", "tflite",
                          "--json", *board.cli_args()], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    health = json.loads(ran.stdout)["health"]
    assert health["passed"] and health["backend"] == "tflite"
    (row,) = health["outputs"]
    assert row["model"] == "classifier" and row["min_cosine"] is not None and row["max_abs"] <= 1e-6
    ran = subprocess.run([str(Path(sys.executable).with_name("edgepad")), "status", "--json", *board.cli_args()],
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    facts = json.loads(ran.stdout)["board"]
    assert facts["teflon"] is None and facts["etnaviv"] is False  # this x86 stand-in board has neither


def test_evaluate_at_the_tflite_stage_follows_the_float_model(tflite_classifier, held_out_faces, tmp_path):
    from edgepad.data.evaluate import EvaluateOptions, evaluate_model

    _calibration, evaluation = held_out_faces
    faces = sorted(evaluation.glob("*.png"))
    for i, face in enumerate(faces):  # a crops folder: <label>/<subject>/<video>/<frame>.png
        label, video = ("live", "s1-1-1-1-1") if i % 2 else ("spoof", "s1-1-2-1-1")
        folder = tmp_path / "crops" / label / "s1" / video
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.png").write_bytes(face.read_bytes())
    quantized = evaluate_model(EvaluateOptions(tflite_classifier, tmp_path / "crops", "tflite", threshold=0.5))
    reference = evaluate_model(EvaluateOptions(tflite_classifier, tmp_path / "crops", "onnx", threshold=0.5))
    assert len(quantized.scores) == len(faces)
    np.testing.assert_allclose(quantized.scores, reference.scores, atol=QUANTIZED_SCORE_ATOL)
