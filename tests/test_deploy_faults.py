"""A failing or compromised board, against the real OpenSSH server on loopback: a runtime that hangs, writes garbage
or nothing during the health check; an altered release that `edgepad bench` must not trust; files gone from old
releases; a client that dies holding the lock; a full disk; symlinks in a bundle. Each fault is made the way it
happens (a real process that hangs, a real tmpfs that fills up, a killed client behind a link that loses its close).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_deploy import assert_release_matches_manifest

from support.deploy_fixtures import copy_bundle, reseal
from support.link_proxy import DroppingLink
from support.tmpfs import mounted_tmpfs

pytestmark = pytest.mark.board
EDGEPAD = [sys.executable, "-m", "edgepad"]
HEALTH_TIMEOUT = 10

# Code put at the top of the bundle's runtime/vim3_infer.py; it runs on the board (Python 3.8) when the health
# check starts the runtime with --parity. {marker} is a file the test watches.
RUNTIME_FAULTS = {
    "hangs": "open({marker!r}, 'w').write(str(os.getpid())); time.sleep(3600)",  # an NPU driver that never returns
    "writes-garbage": "open(sys.argv[sys.argv.index('--out') + 1], 'wb').write(b'PK\\x03\\x04' + os.urandom(4000)); "
                      "sys.exit(0)",
    "writes-nothing": "sys.exit(0)",
}


def bundle_with_runtime_fault(source: Path, destination: Path, fault: str, marker: Path) -> Path:
    bundle = copy_bundle(source, destination)
    script = bundle / "runtime" / "vim3_infer.py"
    head = "from __future__ import annotations\n"
    code = (f"import os, sys, time\nif '--parity' in sys.argv:\n    "
            f"{RUNTIME_FAULTS[fault].format(marker=str(marker))}\n")
    script.write_text(script.read_text().replace(head, head + code, 1))
    reseal(bundle)
    return bundle


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in stderr and lines, stderr
    return lines[-1]


def gone(pid: int, seconds: float = 10) -> bool:
    """The process has ended (and been reaped, or is a zombie waiting for its parent)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except (OSError, IndexError):
            return True
        time.sleep(0.05)
    return False


def wait_for(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("fault", list(RUNTIME_FAULTS))
def test_runtime_failing_the_health_check_never_moves_current(board, small_bundle_dir, tmp_path, fault):
    first = board.deploy(small_bundle_dir, health_check=False)
    marker = tmp_path / "runtime-started"
    bad = bundle_with_runtime_fault(small_bundle_dir, tmp_path / "bad", fault, marker)

    deploy = subprocess.Popen(EDGEPAD + ["deploy", str(bad), "--health-timeout", str(HEALTH_TIMEOUT),
                                         *board.cli_args()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if fault == "hangs":
        wait_for(marker)
        started = time.monotonic()
        hung_pid = int(marker.read_text())
        # a rollback during the health check refuses: the deploy holds the lock
        ran = subprocess.run(EDGEPAD + ["rollback", *board.cli_args()], capture_output=True, text=True)
        assert ran.returncode != 0
        assert "another deploy or rollback holds" in error_line(ran.stderr) and "edgepad deploy pid" in ran.stderr
        assert board.current() == first.release
    stdout, stderr = deploy.communicate(timeout=HEALTH_TIMEOUT + 120)

    assert deploy.returncode != 0
    line = error_line(stderr)
    print(f"{fault}: {line}")
    assert line.startswith("error: ") and "health check of release" in line
    assert f"`current` still points to {first.release}" in line
    expected = {"hangs": f"did not finish within {HEALTH_TIMEOUT} s (--health-timeout)",
                "writes-garbage": "is not an npz of its outputs", "writes-nothing": "exited 0 but wrote no"}[fault]
    assert expected in line, line
    assert board.current() == first.release
    assert board.complete_releases() == [first.release]
    assert len(list((board.remote_dir / "releases").glob(".failed-*"))) == 1
    assert not list(board.remote_dir.glob(".health-*"))
    if fault == "hangs":
        exited_after = time.monotonic() - started
        print(f"hung runtime: deploy exited {exited_after - HEALTH_TIMEOUT:.1f} s after the {HEALTH_TIMEOUT} s timeout")
        assert exited_after < HEALTH_TIMEOUT + 30
        assert gone(hung_pid)  # the hung runtime was stopped, not left running on the board


def test_bench_runs_nothing_from_the_board_on_the_host(board, bundle_dir, faces_dir, tmp_path):
    """The board's current release has altered runtime code: the board runs it (it is the board's), the host
    never does: the host side is this host's installed runtime on model files checked against the manifest."""
    marker = tmp_path / "ran-by"
    board.deploy(bundle_dir, health_check=False)
    script = board.remote_dir / "current" / "runtime" / "vim3_infer.py"
    head = "from __future__ import annotations\n"
    script.write_text(script.read_text().replace(
        head, head + f"import sys\nopen({str(marker)!r}, 'a').write(sys.executable + '\\n')\n", 1))

    ran = subprocess.run(EDGEPAD + ["bench", "--image", str(faces_dir / "t1.jpg"), "--runs", "1", "--plot",
                                    str(tmp_path / "bench.png"), "--json", *board.cli_args()],
                         capture_output=True, text=True)

    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["board"]["faces"] == result["local"]["faces"] > 0
    ran_by = marker.read_text().split()
    assert ran_by and set(ran_by) == {str(board.python)}  # the altered code is live, on the board only
    assert sys.executable not in ran_by


def test_bench_refuses_a_manifest_that_points_outside_the_release(board, small_bundle_dir, faces_dir, tmp_path):
    board.deploy(small_bundle_dir, health_check=False)
    host_tmp = tmp_path / "host-tmp"
    host_tmp.mkdir()
    absolute = tmp_path / "absolute-target"
    absolute.write_text("the host's own file\n")
    (board.remote_dir / "escaped").write_text("board data\n")  # what releases/<id>/../../escaped names on the board
    manifest_path = board.remote_dir / "current" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    model = next(e for e in manifest["files"] if e["path"].startswith("models/"))
    for bad_path in (str(absolute), "../../escaped"):
        manifest["files"] = [e for e in manifest["files"] if e["path"] in (model["path"],)] + [
            {"path": bad_path, "sha256": model["sha256"], "size": model["size"]}]
        manifest_path.write_text(json.dumps(manifest))

        ran = subprocess.run(EDGEPAD + ["bench", "--image", str(faces_dir / "t1.jpg"), "--runs", "1", "--plot",
                                        str(tmp_path / "bench.png"), *board.cli_args()],
                             capture_output=True, text=True, env={**os.environ, "TMPDIR": str(host_tmp)})

        assert ran.returncode != 0
        line = error_line(ran.stderr)
        assert repr(bad_path) in line and "not a plain relative path" in line, line
        assert list(host_tmp.iterdir()) == []  # the bench's temporary folder is gone, and nothing beside it
        assert absolute.read_text() == "the host's own file\n"
        assert not (tmp_path / "escaped").exists() and not (host_tmp.parent / "escaped").exists()
        assert not (tmp_path / "bench.png").exists()


def test_bench_refuses_model_files_whose_sha256_differs(board, small_bundle_dir, faces_dir, tmp_path):
    board.deploy(small_bundle_dir, health_check=False)
    on_board = board.remote_dir / "current" / "models" / "classifier" / "model.onnx"
    data = bytearray(on_board.read_bytes())
    data[len(data) // 2] ^= 0xFF
    on_board.write_bytes(bytes(data))
    for extra, against in (([], "board's manifest"), (["--bundle", str(small_bundle_dir)], "--bundle manifest")):
        ran = subprocess.run(EDGEPAD + ["bench", "--image", str(faces_dir / "t1.jpg"), "--runs", "1", "--plot",
                                        str(tmp_path / "bench.png"), *extra, *board.cli_args()],
                             capture_output=True, text=True)
        assert ran.returncode != 0
        line = error_line(ran.stderr)
        assert f"models/classifier/model.onnx on the board differs from the {against}" in line, line


def test_file_deleted_from_an_old_release_is_sent_and_nothing_else(board, small_bundle_dir, tmp_path):
    from edgepad.deploy.release import DeployObserver

    first = board.deploy(small_bundle_dir, health_check=False)
    old = board.remote_dir / "releases" / first.release
    (old / "reference" / "outputs.npz").unlink()
    (board.remote_dir / "releases" / ".partial-20200101T000000Z-deadbeef" / "models").mkdir(parents=True)

    class DeleteAfterTheScan(DeployObserver):
        """A file that vanishes between the scan and the upload (someone cleaning the board by hand)."""

        def phase(self, host, name):
            if name == "upload":
                (old / "reference" / "inputs.npz").unlink()

    second = board.deploy(small_bundle_dir, DeleteAfterTheScan())

    assert second.passed and second.health.passed
    assert second.files_uploaded == 1  # outputs.npz: known missing at the scan
    assert second.files_repaired == ["reference/inputs.npz"]  # gone after it: caught by the sha256 check
    assert board.current() == second.release
    assert_release_matches_manifest(board.remote_dir / "releases" / second.release, small_bundle_dir)
    assert not list((board.remote_dir / "releases").glob(".partial-*"))


def test_client_killed_mid_deploy_then_break_lock_names_the_holder(board, small_bundle_dir, tmp_path):
    first = board.deploy(small_bundle_dir, health_check=False)
    marker = tmp_path / "runtime-started"
    slow = bundle_with_runtime_fault(small_bundle_dir, tmp_path / "slow", "hangs", marker)
    link = DroppingLink(board.sshd.port)
    try:
        (tmp_path / "known_hosts_link").write_text(board.sshd.known_hosts_line().replace(
            f":{board.sshd.port} ", f":{link.port} "))
        via_link = [a.replace(f":{board.sshd.port}", f":{link.port}") if a.startswith("root@") else a
                    for a in board.cli_args()]
        via_link[via_link.index("--known-hosts") + 1] = str(tmp_path / "known_hosts_link")
        client = subprocess.Popen(EDGEPAD + ["deploy", str(slow), "--health-timeout", "30", *via_link],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(marker)
        client.send_signal(signal.SIGKILL)  # the client dies; the link loses its close, the board never hears
        client.wait()
        holder = json.loads((board.remote_dir / ".deploy.lock").read_text())
        assert holder["pid"] == client.pid and not gone(holder["board_pid"], seconds=1)

        ran = subprocess.run(EDGEPAD + ["deploy", str(small_bundle_dir), "--no-health-check", *board.cli_args()],
                             capture_output=True, text=True)
        assert ran.returncode != 0
        line = error_line(ran.stderr)
        assert f"edgepad deploy pid {client.pid} on host" in line and "--break-lock" in line
        assert board.current() == first.release

        ran = subprocess.run(EDGEPAD + ["deploy", str(small_bundle_dir), "--no-health-check", "--break-lock",
                                        "--json", *board.cli_args()], capture_output=True, text=True)
        assert ran.returncode == 0, ran.stderr
        assert f"broke the deploy lock held by edgepad deploy pid {client.pid} on host" in ran.stderr
        assert board.current() == json.loads(ran.stdout)["release"] != first.release
        assert gone(holder["board_pid"])  # the stale holder on the board was ended
    finally:
        link.close()


def test_keep_1_keeps_the_previous_release(board, small_bundle_dir):
    a = board.deploy(small_bundle_dir, health_check=False, keep=1)
    b = board.deploy(small_bundle_dir, health_check=False, keep=1)
    assert board.complete_releases() == [a.release, b.release]  # a is what ran until now, the rollback target
    c = board.deploy(small_bundle_dir, health_check=False, keep=1)
    assert c.pruned == [a.release] and board.complete_releases() == [b.release, c.release]


def test_symlink_in_a_bundle_is_refused(board, small_bundle_dir, tmp_path):
    from edgepad.deploy import manifest as manifest_io
    from edgepad.errors import InputFileError

    secret = tmp_path / "id_ed25519"
    secret.write_text("PRIVATE KEY\n")
    bundle = copy_bundle(small_bundle_dir, tmp_path / "bundle")
    (bundle / "models" / "classifier" / "notes.txt").symlink_to(secret)
    with pytest.raises(InputFileError, match=r"models/classifier/notes\.txt: a symbolic link"):
        reseal(bundle)

    (bundle / "models" / "classifier" / "notes.txt").unlink()
    copy = tmp_path / "model-copy.onnx"
    model = bundle / "models" / "classifier" / "model.onnx"
    model.rename(copy)
    model.symlink_to(copy)  # same bytes, same sha256: only lstat tells
    manifest_io.load(bundle)
    ran = subprocess.run(EDGEPAD + ["deploy", str(bundle), *board.cli_args()], capture_output=True, text=True)
    assert ran.returncode != 0
    line = error_line(ran.stderr)
    assert "models/classifier/model.onnx: a symbolic link" in line
    assert not board.remote_dir.exists()


@pytest.fixture
def tmpfs_board(board, tmp_path):
    with mounted_tmpfs(tmp_path / "tmpfs-board", "24m", "a full disk") as mount_point:
        board.remote_dir = mount_point / "edgepad"
        yield board


def test_full_disk_is_named_as_such(tmpfs_board, small_bundle_dir, tmp_path):
    from edgepad.deploy.release import DeployObserver
    from edgepad.errors import DeployError

    board = tmpfs_board
    first = board.deploy(small_bundle_dir, health_check=False)
    (board.remote_dir / "releases" / first.release / "reference" / "outputs.npz").unlink()  # one file to send

    class DiskFillsUp(DeployObserver):
        """Something else on the board (logs, a camera recording) fills the disk while the deploy uploads."""

        def upload_start(self, host, files, total_bytes):
            with open(board.remote_dir / "recording.bin", "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * (1 << 16))
                except OSError:
                    pass

    with pytest.raises(DeployError, match=r"the board's disk is full under .*while sending reference/outputs\.npz"
                                          r".*`current` still points to " + first.release):
        board.deploy(small_bundle_dir, DiskFillsUp(), health_check=False)
    assert board.current() == first.release

    # the disk stays full: the next deploy says so before it sends anything
    (board.remote_dir / "releases" / first.release / "reference" / "inputs.npz").unlink()
    ran = subprocess.run(EDGEPAD + ["deploy", str(small_bundle_dir), *board.cli_args()], capture_output=True, text=True)
    assert ran.returncode != 0
    line = error_line(ran.stderr)
    assert "the board's disk is full" in line and "MB free" in line and "connection lost" not in line
    assert board.current() == first.release


def test_half_dead_link_during_the_upload_fails_instead_of_hanging(board, small_bundle_dir, tmp_path, monkeypatch):
    from edgepad.deploy import ssh
    from edgepad.deploy.pipeline import DeployOptions, deploy_host
    from edgepad.deploy.release import DeployObserver
    from edgepad.errors import DeployError

    monkeypatch.setattr(ssh, "SFTP_TIMEOUT_S", 3)
    link = DroppingLink(board.sshd.port)
    try:
        board.known_hosts.write_text(board.sshd.known_hosts_line().replace(f":{board.sshd.port} ", f":{link.port} "))

        class LinkFreezes(DeployObserver):
            def bytes_sent(self, host, path, sent):
                link.freeze()

        spec = ssh.HostSpec("127.0.0.1", link.port, "root")
        started = time.monotonic()
        with pytest.raises(DeployError, match="connection lost during upload .*current` still points to nothing"):
            deploy_host(spec, DeployOptions(small_bundle_dir, board.board_options()), LinkFreezes())
        assert time.monotonic() - started < 60
    finally:
        link.close()
    assert board.current() is None
