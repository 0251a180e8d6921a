"""A real OpenSSH server on 127.0.0.1 for the deploy tests: generated host and client keys, a free port.

It runs as the current user (root here, so the "board user" is root) with its own config, never the system's.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {folder}/host_ed25519_key
AuthorizedKeysFile {folder}/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
PidFile {folder}/sshd.pid
MaxStartups 64
MaxSessions 64
LogLevel ERROR
"""


@dataclass
class LoopbackSshd:
    folder: Path
    port: int
    process: subprocess.Popen

    host = "127.0.0.1"

    @property
    def client_key(self) -> Path:
        return self.folder / "client_ed25519"

    @property
    def host_public_key(self) -> str:
        return (self.folder / "host_ed25519_key.pub").read_text().strip()

    def known_hosts_line(self) -> str:
        key_type, key = self.host_public_key.split()[:2]
        return f"[{self.host}]:{self.port} {key_type} {key}\n"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def available() -> bool:
    return Path(SSHD).exists() and shutil.which("ssh-keygen") is not None


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(folder: Path) -> LoopbackSshd:
    folder.mkdir(parents=True, exist_ok=True)
    keygen(folder / "host_ed25519_key")
    keygen(folder / "client_ed25519")
    (folder / "authorized_keys").write_text((folder / "client_ed25519.pub").read_text())
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation directory
    port = free_port()
    (folder / "sshd_config").write_text(CONFIG.format(port=port, folder=folder))
    process = subprocess.Popen([SSHD, "-D", "-f", str(folder / "sshd_config"), "-E", str(folder / "sshd.log")])
    server = LoopbackSshd(folder, port, process)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}: {(folder / 'sshd.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError("sshd did not start listening within 15 s")


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def cut_connections(server: LoopbackSshd) -> int:
    """Drop every client connection the way a pulled cable does: kill the server's session processes."""
    import os
    import signal

    killed = 0
    for pid in descendants(server.process.pid):
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
    return killed
