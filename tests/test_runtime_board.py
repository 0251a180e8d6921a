"""The runtime under the board's Python: 3.8 with numpy, OpenCV and onnxruntime only, from a real bundle."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np

from edgepad.convert.parity import FLOAT32_ATOL, compare_outputs

TESTS = Path(__file__).resolve().parent


def board_run(board_python, *args, env=None):
    return subprocess.run([str(board_python), *[str(a) for a in args]], capture_output=True, text=True,
                          cwd=str(TESTS.parent), env=env, timeout=300)


def test_board_python_has_only_the_board_packages(board_python):
    assert board_run(board_python, "-c", "import sys; assert sys.version_info[:2] == (3, 8)").returncode == 0
    for absent in ("tensorflow", "keras", "click", "paramiko"):
        assert board_run(board_python, "-c", f"import {absent}").returncode != 0, absent


def test_runtime_suite_passes_on_board_python(board_python, runtime_bundle):
    from support.embedding_faces import converted_embedding_dir

    env = dict(os.environ, EDGEPAD_BOARD_BUNDLE=str(runtime_bundle),
               EDGEPAD_BOARD_EMBEDDING=str(converted_embedding_dir() / "emb_out"))
    completed = board_run(board_python, "-m", "pytest", "tests/runtime_board", "-q", "-p", "no:cacheprovider", env=env)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-2000:]
    assert "passed" in completed.stdout and "skipped" not in completed.stdout and "failed" not in completed.stdout


def test_vim3_infer_script_finds_the_same_faces_as_the_host(board_python, runtime_bundle, pipeline, faces_dir):
    import cv2

    completed = board_run(board_python, runtime_bundle / "runtime" / "vim3_infer.py", "--bundle", runtime_bundle,
                          "--image", faces_dir / "t1.jpg")
    assert completed.returncode == 0, completed.stderr
    (line,) = completed.stdout.strip().splitlines()
    board_faces = json.loads(line)["faces"]
    host_faces = pipeline.process(cv2.imread(str(faces_dir / "t1.jpg"))).faces
    assert len(board_faces) == len(host_faces) == 6
    for board_face, host_face in zip(board_faces, host_faces, strict=True):
        np.testing.assert_allclose(board_face["box"], host_face.box, atol=0.11)  # JSON rounds to 0.1 px
        np.testing.assert_allclose(board_face["live"], host_face.live, atol=1e-3)


def test_parity_on_board_python_matches_the_host_reference(board_python, runtime_bundle, tmp_path):
    out = tmp_path / "outputs.npz"
    completed = board_run(board_python, runtime_bundle / "runtime" / "vim3_infer.py", "--bundle", runtime_bundle,
                          "--parity", runtime_bundle / "reference" / "inputs.npz", "--out", out)
    assert completed.returncode == 0, completed.stderr
    reference = np.load(runtime_bundle / "reference" / "outputs.npz")
    board = np.load(out)
    keys = sorted(reference.files)
    assert sorted(board.files) == keys and {k.split("/")[0] for k in keys} == {"classifier", "pnet", "rnet", "onet"}
    result = compare_outputs({k: [reference[k]] for k in keys}, {k: [board[k]] for k in keys},
                             reference_name="host onnxruntime", candidate_name="board runtime", atol=FLOAT32_ATOL)
    assert result.passed, result.to_json()


def test_bench_on_board_python(board_python, runtime_bundle, faces_dir):
    completed = board_run(board_python, runtime_bundle / "runtime" / "vim3_infer.py", "--bundle", runtime_bundle,
                          "--image", faces_dir / "astronaut.png", "--bench", 3, "--json")
    assert completed.returncode == 0, completed.stderr
    figures = json.loads(completed.stdout)
    assert set(figures["stages_ms"]) == {"detect", "align", "classify", "total"}
    assert all(v["p50"] <= v["p95"] for v in figures["stages_ms"].values())
    assert figures["faces"] == 1 and figures["fps"] > 0
