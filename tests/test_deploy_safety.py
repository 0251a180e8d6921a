"""What edgepad deploy must refuse or survive: unknown and changed host keys, a connection cut mid-upload,
names that would be shell syntax. Against a real OpenSSH server on loopback."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_deploy import assert_release_matches_manifest

from support import loopback_sshd
from support.deploy_fixtures import copy_bundle, reseal

pytestmark = pytest.mark.board
EDGEPAD = [sys.executable, "-m", "edgepad"]


def openssh_fingerprint(public_key_file: Path) -> str:
    """The fingerprint as OpenSSH's own ssh-keygen prints it (the independent reference)."""
    return subprocess.run(["ssh-keygen", "-lf", str(public_key_file)], capture_output=True, text=True,
                          check=True).stdout.split()[1]


def test_unknown_host_key_is_refused_before_anything_is_written(board, small_bundle_dir):
    from edgepad.errors import HostKeyError

    board.known_hosts.write_text("")
    with pytest.raises(HostKeyError) as refused:
        board.deploy(small_bundle_dir)
    message = str(refused.value)
    assert "unknown host key" in message and "--trust-new-host" in message and "ssh-ed25519" in message
    assert openssh_fingerprint(board.sshd.folder / "host_ed25519_key.pub") in message
    assert "\n" not in message
    assert not board.remote_dir.exists()
    assert board.known_hosts.read_text() == ""

    ran = subprocess.run(EDGEPAD + ["deploy", str(small_bundle_dir), *board.cli_args()], capture_output=True, text=True)
    assert ran.returncode != 0 and "Traceback" not in ran.stderr
    assert ran.stderr.strip().splitlines()[-1].startswith("error: [127.0.0.1]:")
    assert not board.remote_dir.exists()


def test_trust_new_host_records_the_key_that_openssh_then_finds(board, small_bundle_dir):
    board.known_hosts.write_text("")
    result = board.deploy(small_bundle_dir, trust_new_host=True, health_check=False)
    assert board.current() == result.release
    found = subprocess.run(["ssh-keygen", "-F", f"[127.0.0.1]:{board.sshd.port}", "-f", str(board.known_hosts)],
                           capture_output=True, text=True)
    assert found.returncode == 0
    assert board.sshd.host_public_key.split()[1] in found.stdout
    board.deploy(small_bundle_dir, health_check=False)  # now known: no flag needed


def test_changed_host_key_is_refused_even_with_trust_new_host(board, small_bundle_dir, tmp_path):
    from edgepad.errors import HostKeyError

    loopback_sshd.keygen(tmp_path / "impostor")
    key_type, key = (tmp_path / "impostor.pub").read_text().split()[:2]
    board.known_hosts.write_text(f"[127.0.0.1]:{board.sshd.port} {key_type} {key}\n")
    before = board.known_hosts.read_text()
    for trust in (False, True):
        with pytest.raises(HostKeyError, match="host key CHANGED") as refused:
            board.deploy(small_bundle_dir, trust_new_host=trust)
        assert openssh_fingerprint(board.sshd.folder / "host_ed25519_key.pub") in str(refused.value)
        assert openssh_fingerprint(tmp_path / "impostor.pub") in str(refused.value)
    assert board.known_hosts.read_text() == before
    assert not board.remote_dir.exists()


class CutConnection:
    """Pulls the plug (kills the server side of the SSH connection) at a chosen point of the deploy."""

    def __init__(self, sshd, at_bytes=None, after_files=None, at_phase=None):
        self.sshd, self.at_bytes, self.after_files, self.at_phase = sshd, at_bytes, after_files, at_phase
        self.sent_bytes = self.sent_files = self.total_bytes = 0
        self.cut = False

    def _cut(self):
        if not self.cut:
            self.cut = loopback_sshd.cut_connections(self.sshd) > 0

    def phase(self, host, name):
        if name == self.at_phase:
            self._cut()

    def upload_start(self, host, files, total_bytes):
        self.total_bytes = total_bytes

    def bytes_sent(self, host, path, sent):
        self.sent_bytes += sent
        if self.at_bytes is not None and self.sent_bytes >= self.at_bytes:
            self._cut()

    def file_sent(self, host, path):
        self.sent_files += 1
        if self.after_files is not None and self.sent_files >= self.after_files:
            self._cut()

    def upload_end(self, host):
        pass


@pytest.mark.parametrize("cut, phase", [
    ({"at_phase": "upload"}, "upload"),  # before the first byte
    ({"at_bytes": 32 * 1024}, "upload"),  # inside the first file
    ({"after_files": 1}, "upload"),  # between two files
    ({"at_bytes": 1_500_000}, "upload"),  # deep into the transfer
    ({"at_phase": "verify"}, "verify"),  # everything sent, nothing checked
    ({"at_phase": "publish"}, "publish"),  # checked, not yet published
], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) if isinstance(c, dict) else None)
def test_connection_cut_keeps_the_previous_release_and_the_next_deploy_completes(board, bundle_dir, small_bundle_dir,
                                                                                 cut, phase):
    from edgepad.errors import DeployError

    first = board.deploy(small_bundle_dir, health_check=False)
    observer = CutConnection(board.sshd, **cut)

    with pytest.raises(DeployError, match=f"connection lost during {phase} .*current` still points to {first.release}"):
        board.deploy(bundle_dir, observer)
    assert observer.cut
    if "at_bytes" in cut:
        assert observer.sent_bytes >= cut["at_bytes"]
    assert board.current() == first.release
    assert board.complete_releases() == [first.release]
    assert_release_matches_manifest(board.remote_dir / "current", small_bundle_dir)

    again = board.deploy(bundle_dir)
    assert again.health.passed
    # it resumes: files the cut upload had finished are linked on the board, not sent again
    if phase in ("verify", "publish"):
        assert again.bytes_uploaded == 0
    elif "after_files" in cut or cut.get("at_bytes", 0) > 1_000_000:
        assert 0 < again.bytes_uploaded < observer.total_bytes
    elif observer.total_bytes:
        assert again.bytes_uploaded <= observer.total_bytes
    assert board.current() == again.release
    assert_release_matches_manifest(board.remote_dir / "current", bundle_dir)
    assert not list((board.remote_dir / "releases").glob(".partial-*"))


def test_shell_metacharacters_in_names_run_nothing(board, small_bundle_dir, tmp_path):
    home = Path.home()
    canary = home / "edgepad-canary"
    pwned = [home / "pwned-edgepad", tmp_path / "pwned-remote-dir"]
    canary.mkdir(exist_ok=True)
    try:
        evil_name = "$(touch pwned-edgepad); rm -rf edgepad-canary; echo 'it\"s `touch pwned-edgepad` & x'.txt"
        bundle = copy_bundle(small_bundle_dir, tmp_path / "evil bundle")
        (bundle / "models" / "classifier" / evil_name).write_text("just a file\n")
        reseal(bundle)
        remote_dir = tmp_path / f"board $(touch {pwned[1]}) ; rm -rf {canary} 'q\" x"

        result = board.deploy(bundle, remote_dir=str(remote_dir))
        again = board.deploy(bundle, remote_dir=str(remote_dir))

        assert result.health.passed and again.health.passed and again.bytes_uploaded == 0
        release = remote_dir / "releases" / again.release
        assert (release / "models" / "classifier" / evil_name).read_text() == "just a file\n"
        assert_release_matches_manifest(release, bundle)
        args = [a if a != str(board.remote_dir) else str(remote_dir) for a in board.cli_args()]
        for command in (["status", "--verify", "--json"], ["rollback", "--json"]):
            ran = subprocess.run(EDGEPAD + command + args, capture_output=True, text=True)
            assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout)["current"] == result.release
        assert canary.is_dir()
        assert not any(p.exists() for p in pwned)
    finally:
        canary.rmdir()


def test_several_boards_from_an_ansible_inventory_with_one_offline(board, small_bundle_dir, tmp_path):
    dead_port = loopback_sshd.free_port()
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"""# fleet
[boards]
board-a ansible_host=127.0.0.1 edgepad_remote_dir={tmp_path}/a
board-b ansible_host=127.0.0.1 ansible_port={board.sshd.port} edgepad_remote_dir={tmp_path}/b

[boards:vars]
ansible_user=root
ansible_port={board.sshd.port}

[offline]
board-c ansible_host=127.0.0.1 ansible_port={dead_port} ansible_user=root
""")
    args = [a for a in board.cli_args()[2:]]
    ran = subprocess.run(EDGEPAD + ["deploy", str(small_bundle_dir), "--inventory", str(inventory), "--parallel", "2",
                                    "--json", *args], capture_output=True, text=True)
    assert ran.returncode == 1
    report = json.loads(ran.stdout)
    by_port = {}
    for host in report["hosts"]:
        by_port.setdefault(host["host"].rsplit(":", 1)[1], []).append(host)
    assert [h["passed"] for h in by_port[str(board.sshd.port)]] == [True, True]
    assert by_port[str(dead_port)][0]["passed"] is False and "cannot connect" in by_port[str(dead_port)][0]["error"]
    for name in ("a", "b"):
        assert (tmp_path / name / "current").is_symlink()
        assert_release_matches_manifest(tmp_path / name / "current", small_bundle_dir)


def test_wrong_key_or_missing_board_python_is_one_line_and_writes_nothing(board, small_bundle_dir, tmp_path):
    loopback_sshd.keygen(tmp_path / "stranger")
    args = board.cli_args()
    wrong_key = [str(tmp_path / "stranger") if a == str(board.sshd.client_key) else a for a in args]
    ran = subprocess.run(EDGEPAD + ["deploy", str(small_bundle_dir), *wrong_key], capture_output=True, text=True)
    assert ran.returncode != 0 and "Traceback" not in ran.stderr
    assert "authentication failed" in ran.stderr.strip().splitlines()[-1]

    no_python = [str(tmp_path / "no python here") if a == str(board.python) else a for a in args]
    ran = subprocess.run(EDGEPAD + ["deploy", str(small_bundle_dir), *no_python], capture_output=True, text=True)
    assert ran.returncode != 0 and "Traceback" not in ran.stderr
    assert "--remote-python" in ran.stderr.strip().splitlines()[-1]
    assert not board.remote_dir.exists()


def test_one_deploy_at_a_time_and_the_lock_dies_with_its_connection(board, small_bundle_dir):
    from edgepad.deploy.pipeline import open_board
    from edgepad.errors import DeployError

    first = board.deploy(small_bundle_dir, health_check=False)
    with open_board(board.spec, board.board_options()) as other:
        busy = "another deploy or rollback holds .*edgepad deploy pid"
        with other.deploy_lock(), pytest.raises(DeployError, match=busy):
            board.deploy(small_bundle_dir, health_check=False)
        assert board.complete_releases() == [first.release]
        other.deploy_lock().__enter__()  # taken, never released by us: only the connection cut frees it
        loopback_sshd.cut_connections(board.sshd)
    second = board.deploy(small_bundle_dir, health_check=False)
    assert board.current() == second.release
