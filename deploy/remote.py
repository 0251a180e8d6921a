"""Commands on the board, always as quoted argv: the board-side operations (board_ops.py) and the runtime.

Nothing here builds shell text by concatenation: `BoardConnection.run` quotes every argument with shlex, and
paths and file names travel to board_ops.py as JSON on stdin.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import posixpath
import socket
from contextlib import contextmanager
from pathlib import Path

import paramiko

from edgepad.errors import DeployError, UsageError

from .board_ops import LOCK_NAME, RELEASES
from .ssh import BoardConnection

BOARD_OPS_SOURCE = (Path(__file__).with_name("board_ops.py")).read_text()
BOARD_OP_TIMEOUT_S = 300


def disk_full_message(name: str, root: str, free: int | None = None, needed: int | None = None) -> str:
    figures = f" ({free / 1e6:.1f} MB free, {needed / 1e6:.1f} MB needed)" if free is not None and needed else ""
    return (f"{name}: the board's disk is full under {root}{figures}; free space there (old releases: "
            "`edgepad deploy --keep 1` next time) or choose another --remote-dir")


def resolve_remote_dir(connection: BoardConnection, remote_dir: str) -> str:
    """`~/edgepad` or a relative path -> absolute, using the login directory SFTP reports (no shell expansion)."""
    if remote_dir in ("~", "") or remote_dir.startswith("~/") or not remote_dir.startswith("/"):
        relative = remote_dir[2:] if remote_dir.startswith("~/") else ("" if remote_dir in ("~", "") else remote_dir)
        remote_dir = posixpath.join(connection.home(), relative)
    root = posixpath.normpath(remote_dir)
    if root == "/" or "\0" in root or "\n" in root:
        raise UsageError(f"--remote-dir {remote_dir!r}: choose a folder of its own, e.g. ~/edgepad")
    return root


class Board:
    """One board: its connection, the remote root, and the Python that runs the runtime and board_ops."""

    def __init__(self, connection: BoardConnection, root: str, python: str):
        self.connection = connection
        self.root = root
        self.python = python

    @property
    def name(self) -> str:
        return str(self.connection.spec)

    def op(self, operation: str, timeout: float = BOARD_OP_TIMEOUT_S, **request) -> dict:
        request["root"] = self.root
        result = self.connection.run([self.python, "-c", BOARD_OPS_SOURCE, operation],
                                     stdin=json.dumps(request).encode() + b"\n", timeout=timeout)
        try:
            answer = json.loads(result.stdout.decode() or "null")
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            stderr = result.stderr.decode(errors="replace").strip().splitlines()
            raise DeployError(f"{self.name}: `{self.python}` could not run the board-side '{operation}' step "
                              f"(exit {result.exit_code}: {stderr[-1] if stderr else 'no output'}); "
                              "pass --remote-python with a Python 3.8+ that exists on the board")
        if not answer.get("ok"):
            if answer.get("errno") == "ENOSPC":
                raise DeployError(disk_full_message(self.name, self.root) + f" (board-side '{operation}')")
            raise DeployError(f"{self.name}: board-side '{operation}' failed under {self.root}: {answer.get('error')}")
        return answer["result"]

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def release_path(self, release: str, *parts: str) -> str:
        return posixpath.join(self.root, RELEASES, release, *parts)

    def break_lock(self) -> str | None:
        """Free a deploy lock left by a client that is gone; returns who held it (None: nobody did)."""
        answer = self.op("break_lock")
        return describe_holder(answer["holder"]) if answer["held"] else None

    @contextmanager
    def deploy_lock(self, command: str = "deploy"):
        """One deploy or rollback at a time per remote dir. The lock lives in a board-side process tied to this
        connection: a client that exits or whose connection closes frees it. A client cut off without a word
        (the network dropped) holds it until sshd notices (ClientAliveInterval on the board) or `--break-lock`."""
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": f"edgepad {command}",
                  "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        channel = self.connection.start([self.python, "-c", BOARD_OPS_SOURCE, "lock"],
                                        stdin=json.dumps({"root": self.root, "holder": holder}).encode() + b"\n",
                                        timeout=BOARD_OP_TIMEOUT_S)
        try:
            line = channel.makefile("rb").readline()
            try:
                answer = json.loads(line.decode() or "null")
            except ValueError:
                answer = None
            if not isinstance(answer, dict):
                raise DeployError(f"{self.name}: `{self.python}` could not take the deploy lock under {self.root}; "
                                  "pass --remote-python with a Python 3.8+ that exists on the board")
            if not answer.get("ok"):
                raise DeployError(f"{self.name}: another deploy or rollback holds {self.root}/{LOCK_NAME} "
                                  f"({describe_holder(answer.get('holder') or {})}); wait for it to finish, or pass "
                                  "--break-lock if that client is gone")
            yield
        finally:
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                channel.close()  # may fail when the connection is gone, and the board-side lock holder with it


def describe_holder(holder: dict) -> str:
    if not holder:
        return "holder unknown: an older edgepad"
    return (f"{holder.get('command', 'edgepad')} pid {holder.get('pid', '?')} on host {holder.get('host', '?')} "
            f"since {holder.get('started', '?')}, board-side pid {holder.get('board_pid', '?')}")
