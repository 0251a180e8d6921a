"""SSH to a board with paramiko: known_hosts checking, key or agent authentication, timeouts and keepalive.

An unknown host key is refused unless the user says --trust-new-host (then it is appended to known_hosts);
a changed host key is always refused. There is no password option: keys or the agent only.
"""
from __future__ import annotations

import base64
import hashlib
import os
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from edgepad.errors import DeployError, HostKeyError

CONNECT_TIMEOUT_S = 15
KEEPALIVE_S = 15
COMMAND_TIMEOUT_S = 600
SFTP_TIMEOUT_S = 60  # one SFTP request without an answer for this long: the link is dead
REMOTE_SHELL = "/bin/sh"


@dataclass(frozen=True)
class HostSpec:
    host: str
    port: int = 22
    user: str = "khadas"
    remote_dir: str | None = None  # this board's own --remote-dir (inventory variable edgepad_remote_dir)

    def __str__(self) -> str:
        return f"{self.user}@{self.host}" + (f":{self.port}" if self.port != 22 else "")


@dataclass(frozen=True)
class SshOptions:
    identity: Path | None = None
    known_hosts: Path | None = None  # default ~/.ssh/known_hosts
    trust_new_host: bool = False
    connect_timeout: float = CONNECT_TIMEOUT_S

    @property
    def known_hosts_file(self) -> Path:
        return Path(self.known_hosts or Path.home() / ".ssh" / "known_hosts").expanduser()


@dataclass
class CommandResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


def fingerprint(key) -> str:
    """OpenSSH's SHA256 fingerprint, as `ssh-keygen -lf` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class BoardConnection:
    """One SSH connection to a board: quoted commands and SFTP."""

    def __init__(self, spec: HostSpec, client):
        self.spec = spec
        self.client = client
        self._sftp = None

    @property
    def transport(self):
        return self.client.get_transport()

    @property
    def sftp(self):
        if self._sftp is None:
            self._sftp = self.client.open_sftp()
            self._sftp.get_channel().settimeout(SFTP_TIMEOUT_S)  # a half-dead link raises instead of hanging
        return self._sftp

    def start(self, argv: list[str], stdin: bytes = b"", timeout: float = COMMAND_TIMEOUT_S):
        """Start argv (quoted) and leave its channel open: for a board-side process that lives as long as we do.

        sshd hands the command line to the user's login shell; it must read POSIX single quotes (sh, bash, dash,
        busybox ash, zsh), and the command itself then runs under /bin/sh whatever that login shell is."""
        channel = self.transport.open_session()
        channel.settimeout(timeout)
        command = "exec " + shlex.join(str(a) for a in argv)
        channel.exec_command(shlex.join([REMOTE_SHELL, "-c", command]))
        if stdin:
            channel.sendall(stdin)
        return channel

    def run(self, argv: list[str], stdin: bytes = b"", timeout: float = COMMAND_TIMEOUT_S) -> CommandResult:
        """Run argv on the board. Every element is quoted: names and paths never reach the shell as syntax."""
        channel = self.start(argv, stdin, timeout)
        channel.shutdown_write()
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        while True:
            if channel.recv_ready():
                out += channel.recv(1 << 16)
            elif channel.recv_stderr_ready():
                err += channel.recv_stderr(1 << 16)
            elif ((channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready())
                  or (channel.closed and channel.eof_received)):
                break
            else:
                if time.monotonic() > deadline:
                    channel.close()
                    raise DeployError(f"{self.spec}: `{argv[0]}` did not finish within {timeout:.0f} s")
                if not self.transport.is_active():
                    raise ConnectionAbortedError(f"connection lost while running `{argv[0]}`")
                time.sleep(0.005)
        code = channel.recv_exit_status()
        channel.close()
        return CommandResult(code, bytes(out), bytes(err))

    def home(self) -> str:
        return self.sftp.normalize(".")

    def close(self) -> None:
        try:
            if self._sftp is not None:
                self._sftp.close()
        except (OSError, EOFError):
            pass
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()


def connect(spec: HostSpec, options: SshOptions) -> BoardConnection:
    """Open an authenticated connection, or raise HostKeyError / DeployError with one line naming the fix."""
    known_hosts = options.known_hosts_file
    client = paramiko.SSHClient()
    if known_hosts.exists():
        try:
            client.load_host_keys(str(known_hosts))
        except (OSError, paramiko.SSHException) as error:
            raise HostKeyError(f"{known_hosts}: cannot read it ({error}); fix or remove the file") from None
    policy = _RecordNewHostKey(known_hosts) if options.trust_new_host else _RefuseUnknownHostKey(known_hosts)
    client.set_missing_host_key_policy(policy)
    if options.identity is not None and not Path(options.identity).expanduser().is_file():
        raise DeployError(f"--identity {options.identity}: no such key file")
    try:
        client.connect(
            spec.host, port=spec.port, username=spec.user,
            key_filename=str(Path(options.identity).expanduser()) if options.identity else None,
            look_for_keys=options.identity is None, allow_agent=True, password=None,
            timeout=options.connect_timeout, banner_timeout=options.connect_timeout,
            auth_timeout=options.connect_timeout, channel_timeout=options.connect_timeout,
        )
    except HostKeyError:
        client.close()
        raise
    except paramiko.BadHostKeyException as error:
        client.close()
        name = known_hosts_name(spec.host, spec.port)
        raise HostKeyError(
            f"{name}: host key CHANGED: the board offers {error.key.get_name()} {fingerprint(error.key)} but "
            f"{known_hosts} has {fingerprint(error.expected_key)}; refusing (possible man-in-the-middle). If the "
            f"board was reinstalled, remove the old key with `ssh-keygen -R '{name}' -f {known_hosts}`") from None
    except paramiko.AuthenticationException as error:
        client.close()
        how = f"key {options.identity}" if options.identity else "the ssh agent and ~/.ssh keys"
        raise DeployError(f"{spec}: authentication failed with {how} ({error}); pass --identity KEY "
                          f"whose public key is in the board's ~/.ssh/authorized_keys") from None
    except (OSError, socket.timeout, EOFError, paramiko.SSHException) as error:
        client.close()
        raise DeployError(f"{spec}: cannot connect ({type(error).__name__}: {error}); check --host and --port "
                          "and that the board is on the network") from None
    client.get_transport().set_keepalive(KEEPALIVE_S)
    return BoardConnection(spec, client)


class _RefuseUnknownHostKey(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: Path):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        raise HostKeyError(
            f"{hostname}: unknown host key {key.get_name()} {fingerprint(key)} (not in {self.known_hosts}); "
            "compare it with `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on the board, then pass --trust-new-host "
            "to record it")


class _RecordNewHostKey(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: Path):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.known_hosts, "a") as f:
            os.chmod(self.known_hosts, 0o600)
            f.write(paramiko.hostkeys.HostKeyEntry([hostname], key).to_line())
        client.get_host_keys().add(hostname, key.get_name(), key)
