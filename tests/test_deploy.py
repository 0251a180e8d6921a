"""edgepad deploy against a real OpenSSH server on loopback, with the runtime running in the board's Python 3.8."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support.deploy_fixtures import copy_bundle, reseal

pytestmark = pytest.mark.board
EDGEPAD = [sys.executable, "-m", "edgepad"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_release_matches_manifest(release: Path, bundle: Path) -> None:
    """Every file the bundle's manifest lists is in the release with the same bytes, manifest.json included."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert (release / "manifest.json").read_bytes() == (bundle / "manifest.json").read_bytes()
    for entry in manifest["files"]:
        assert sha256(release / entry["path"]) == sha256(bundle / entry["path"]) == entry["sha256"], entry["path"]


def test_deploy_passes_health_check_on_the_board(board, bundle_dir):
    result = board.deploy(bundle_dir)

    assert result.health.passed, result.health.to_json()
    checked = {(row["model"], row["output"]) for row in result.health.outputs}
    host_outputs = np.load(bundle_dir / "reference" / "outputs.npz")
    assert checked == {tuple(key.split("/", 1)) for key in host_outputs.files}  # every model, every output
    assert {m for m, _ in checked} == {"classifier", "pnet", "rnet", "onet"}
    assert all(row["max_abs"] <= row["atol"] for row in result.health.outputs)
    assert board.current() == result.release
    assert_release_matches_manifest(board.remote_dir / "current", bundle_dir)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest_size = (bundle_dir / "manifest.json").stat().st_size
    assert result.bytes_uploaded == sum(f["size"] for f in manifest["files"]) + manifest_size


def test_health_check_with_the_opencv_backend_on_the_board(board, bundle_dir):
    """cv2.dnn on the board (Caffe files where the model has them) against the host's onnxruntime."""
    result = board.deploy(bundle_dir, backend="opencv")
    assert result.health.passed and result.health.backend == "opencv"
    assert all(row["atol"] is not None for row in result.health.outputs)  # float backend: held to max abs


def test_second_deploy_of_the_same_bundle_uploads_almost_nothing(board, bundle_dir):
    first = board.deploy(bundle_dir)
    second = board.deploy(bundle_dir)

    assert second.bytes_uploaded == 0 and second.files_uploaded == 0
    assert second.files_reused == first.files_uploaded
    assert second.health.passed
    assert board.current() == second.release != first.release
    assert board.complete_releases() == sorted([first.release, second.release])
    assert_release_matches_manifest(board.remote_dir / "releases" / second.release, bundle_dir)


def test_cli_deploy_json_and_status(board, bundle_dir):
    ran = subprocess.run(EDGEPAD + ["deploy", str(bundle_dir), "--json", *board.cli_args()],
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert {"host", "release", "bytes_uploaded", "files_reused", "health", "seconds"} <= set(result)
    assert result["health"]["passed"] and result["health"]["outputs"]
    assert board.current() == result["release"]

    ran = subprocess.run(EDGEPAD + ["status", "--verify", "--json", *board.cli_args()], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    status = json.loads(ran.stdout)
    assert status["current"] == result["release"]
    assert sorted(status["models"]) == ["classifier", "onet", "pnet", "rnet"]
    assert status["board"]["python"].startswith("3.8.")
    assert status["runtime_backend"] == "onnxruntime"
    assert status["corrupted_files"] == []
    serial = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.lower().startswith("serial")), "")
    assert status["board"]["is_vim3"] == serial.lower().startswith("290b")


def test_dry_run_says_what_would_be_sent_and_writes_nothing(board, bundle_dir):
    ran = subprocess.run(EDGEPAD + ["deploy", str(bundle_dir), "--dry-run", *board.cli_args()],
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert "models/classifier/model.onnx" in ran.stdout and "send" in ran.stdout
    assert not board.remote_dir.exists()


def test_rollback_switches_current_back(board, bundle_dir, small_bundle_dir):
    first = board.deploy(bundle_dir)
    second = board.deploy(small_bundle_dir)
    assert second.files_uploaded > 0 and second.files_reused > 0  # the model is shared, the references are not
    ran = subprocess.run(EDGEPAD + ["rollback", "--json", *board.cli_args()], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"host": str(board.spec), "previous": second.release, "current": first.release}
    assert board.current() == first.release


def test_model_failing_parity_on_the_board_is_rolled_back(board, bundle_dir, tmp_path):
    """A bundle whose classifier file was swapped for one with other weights: the board computes other numbers."""
    import onnx
    from onnx import numpy_helper

    good = board.deploy(bundle_dir)
    bad_bundle = copy_bundle(bundle_dir, tmp_path / "bad_bundle")
    model_path = bad_bundle / "models" / "classifier" / "model.onnx"
    model = onnx.load(str(model_path))
    weights = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    weights.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weights) * 1.5, weights.name))
    onnx.save(model, str(model_path))
    reseal(bad_bundle)

    ran = subprocess.run(EDGEPAD + ["deploy", str(bad_bundle), "--json", *board.cli_args()],
                         capture_output=True, text=True)

    assert ran.returncode != 0
    result = json.loads(ran.stdout)
    assert result["health"]["passed"] is False and result["rolled_back"] is True
    failing = {(r["model"], r["output"]) for r in result["health"]["outputs"] if not r["passed"]}
    assert failing == {("classifier", "pad_prob")}
    assert board.current() == good.release
    assert board.complete_releases() == [good.release]
    assert (board.remote_dir / "releases" / f".failed-{result['release']}").is_dir()


def test_file_corrupted_on_the_board_is_caught_and_sent_again(board, bundle_dir):
    from edgepad.deploy.status import board_status

    first = board.deploy(bundle_dir)
    on_board = board.remote_dir / "releases" / first.release / "models" / "classifier" / "model.onnx"
    data = bytearray(on_board.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped: only the sha256 tells
    on_board.write_bytes(bytes(data))

    status = board_status(board.spec, board.board_options(), verify=True)
    assert status["corrupted_files"] == ["models/classifier/model.onnx"]

    second = board.deploy(bundle_dir)
    assert second.files_repaired == ["models/classifier/model.onnx"]
    assert second.bytes_uploaded == on_board.stat().st_size
    assert second.health.passed
    assert_release_matches_manifest(board.remote_dir / "releases" / second.release, bundle_dir)


def test_file_that_stays_corrupt_on_the_board_fails_the_deploy(board, bundle_dir, small_bundle_dir):
    from edgepad.deploy.release import DeployObserver
    from edgepad.errors import DeployError

    first = board.deploy(small_bundle_dir)

    class CorruptAfterEveryUpload(DeployObserver):
        """A board whose storage flips a byte of what was just written (what a failing eMMC does)."""

        def upload_end(self, host):
            for staged in (board.remote_dir / "releases").glob(".partial-*/reference/inputs.npz"):
                data = bytearray(staged.read_bytes())
                data[100] ^= 0x01
                staged.write_bytes(bytes(data))

    with pytest.raises(DeployError, match=r"sha256 of reference/inputs\.npz .*differs from the manifest"):
        board.deploy(bundle_dir, CorruptAfterEveryUpload())
    assert board.current() == first.release
    assert board.complete_releases() == [first.release]


def test_first_deploy_failing_parity_leaves_no_current(board, bundle_dir, tmp_path):
    bad_bundle = copy_bundle(bundle_dir, tmp_path / "bad_bundle")
    with np.load(bad_bundle / "reference" / "outputs.npz") as data:
        outputs = {k: data[k] for k in data.files}
    outputs["rnet/face_prob"] = outputs["rnet/face_prob"][:, ::-1].copy()  # host references tampered with
    np.savez(bad_bundle / "reference" / "outputs.npz", **outputs)
    reseal(bad_bundle)

    result = board.deploy(bad_bundle)

    assert not result.health.passed and result.rolled_back
    assert {(r["model"], r["output"]) for r in result.health.outputs if not r["passed"]} == {("rnet", "face_prob")}
    assert board.current() is None


def test_bench_runs_on_the_board_and_the_host_side_by_side(board, bundle_dir, faces_dir, tmp_path):
    import cv2

    board.deploy(bundle_dir, health_check=False)
    plot = tmp_path / "bench.png"
    ran = subprocess.run(EDGEPAD + ["bench", "--image", str(faces_dir / "t1.jpg"), "--runs", "2", "--plot", str(plot),
                                    "--json", *board.cli_args()], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    for side in ("board", "local"):
        assert set(result[side]["stages_ms"]) >= {"detect", "classify", "total"}
        assert result[side]["fps"] > 0
    assert result["board"]["faces"] == result["local"]["faces"] > 0  # the same runtime finds the same faces
    assert [row["stage"] for row in result["stages"]] == list(result["board"]["stages_ms"])
    image = cv2.imread(str(plot))
    assert image is not None and image.shape == (520, 900, 3) and image.std() > 10


def test_keep_prunes_old_releases_but_never_the_current_one(board, bundle_dir, small_bundle_dir, tmp_path):
    a = board.deploy(small_bundle_dir, health_check=False, keep=2)
    b = board.deploy(bundle_dir, health_check=False, keep=2)
    c = board.deploy(small_bundle_dir, health_check=False, keep=2)
    assert c.pruned == [a.release] and board.complete_releases() == [b.release, c.release]
    assert_release_matches_manifest(board.remote_dir / "releases" / c.release, small_bundle_dir)  # reused from a

    from edgepad.deploy.pipeline import rollback_host

    rollback_host(board.spec, board.board_options(), to_release=b.release)
    bad = copy_bundle(small_bundle_dir, tmp_path / "bad")
    with np.load(bad / "reference" / "outputs.npz") as data:
        np.savez(bad / "reference" / "outputs.npz", **{k: data[k] + 1.0 for k in data.files})
    reseal(bad)
    failed = board.deploy(bad, keep=1)

    assert failed.rolled_back and board.current() == b.release
    assert board.complete_releases() == [b.release, c.release]  # keep=1 keeps the newest, and current stays
