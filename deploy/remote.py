"""Commands on the board, always as quoted argv: the board-side operations (board_ops.py) and the runtime.

Nothing here builds shell text by concatenation: `BoardConnection.run` quotes every argument with shlex, and
paths and file names travel to board_ops.py as JSON on stdin.
"""
from __future__ import annotations

import json
import posixpath
from contextlib import contextmanager
from pathlib import Path

import paramiko

from edgepad.errors import DeployError, UsageError

from .ssh import BoardConnection

BOARD_OPS_SOURCE = (Path(__file__).with_name("board_ops.py")).read_text()
BOARD_OP_TIMEOUT_S = 300


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

    def op(self, operation: str, **request) -> dict:
        request["root"] = self.root
        result = self.connection.run([self.python, "-c", BOARD_OPS_SOURCE, operation],
                                     stdin=json.dumps(request).encode() + b"\n", timeout=BOARD_OP_TIMEOUT_S)
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
            raise DeployError(f"{self.name}: board-side '{operation}' failed under {self.root}: {answer.get('error')}")
        return answer["result"]

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def release_path(self, release: str, *parts: str) -> str:
        return posixpath.join(self.root, "releases", release, *parts)

    @contextmanager
    def deploy_lock(self):
        """One deploy at a time per remote dir. The lock lives in a board-side process tied to this connection,
        so a deploy that dies or loses its connection never leaves a stale lock behind."""
        channel = self.connection.start([self.python, "-c", BOARD_OPS_SOURCE, "lock"],
                                        stdin=json.dumps({"root": self.root}).encode() + b"\n",
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
                raise DeployError(f"{self.name}: another deploy to {self.root} is running (its lock "
                                  f"{self.root}/.deploy.lock is held); wait for it to finish")
            yield
        finally:
            try:
                channel.close()
            except (OSError, EOFError, paramiko.SSHException):
                pass  # the connection is gone, and the board-side lock holder with it
