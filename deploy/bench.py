"""`edgepad bench`: the runtime's `--bench` on the board and the same on the host, side by side, plus a PNG.

Both sides run the same runtime/ and models (the board's current release; the host runs --bundle, or a copy of
that release fetched from the board) on the same image.
"""
from __future__ import annotations

import json
import posixpath
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from edgepad.errors import DeployError, InputFileError

from .health import runtime_command
from .manifest import MANIFEST_NAME
from .pipeline import BoardOptions, open_board
from .remote import Board
from .ssh import HostSpec

BENCH_TIMEOUT_S = 1800


def bench(spec: HostSpec, options: BoardOptions, image: Path, repeats: int, bundle: Path | None = None,
          backend: str | None = None) -> dict:
    image = Path(image)
    if not image.is_file():
        raise InputFileError(f"--image {image}: no such file")
    with open_board(spec, options) as board, tempfile.TemporaryDirectory(prefix="edgepad-bench-") as scratch:
        current = board.op("scan")["current"]
        if not current:
            raise DeployError(f"{board.name}: nothing deployed under {board.root}; run `edgepad deploy` first")
        board_figures = _bench_on_board(board, current, image, repeats, backend)
        local_bundle = Path(bundle) if bundle else fetch_release(board, current, Path(scratch) / "release")
        # The NPU exists only on the board: the host runs the CPU backend (by default the runtime would pick the
        # NPU's emulator for models with NPU files)
        host_backend = "onnxruntime" if backend in (None, "ksnn") else backend
        host_figures = bench_on_host(local_bundle, image, repeats, host_backend)
    return {"host": board.name, "release": current, "image": str(image), "repeats": repeats,
            "board": board_figures, "local": host_figures}


def _bench_on_board(board: Board, release: str, image: Path, repeats: int, backend: str | None) -> dict:
    remote_image = f".bench-{secrets.token_hex(4)}{image.suffix.lower()}"
    board.connection.sftp.put(str(image), board.path(remote_image))
    try:
        argv = runtime_command(board, release, "--image", board.path(remote_image), "--bench", str(repeats), "--json")
        if backend:
            argv += ["--backend", backend]
        ran = board.connection.run(argv, timeout=BENCH_TIMEOUT_S)
    finally:
        board.op("remove", path=remote_image)
    return _figures(ran.exit_code, ran.stdout.decode(errors="replace"), ran.stderr.decode(errors="replace"), board.name)


def bench_on_host(bundle: Path, image: Path, repeats: int, backend: str | None) -> dict:
    argv = [sys.executable, str(bundle / "runtime" / "vim3_infer.py"), "--bundle", str(bundle), "--image", str(image),
            "--bench", str(repeats), "--json"] + (["--backend", backend] if backend else [])
    ran = subprocess.run(argv, capture_output=True, text=True, timeout=BENCH_TIMEOUT_S)
    return _figures(ran.returncode, ran.stdout, ran.stderr, "this host")


def fetch_release(board: Board, release: str, destination: Path) -> Path:
    """A local copy of the board's release (the files its manifest lists), for the host side of the bench."""
    sftp = board.connection.sftp
    destination.mkdir(parents=True)
    sftp.get(board.release_path(release, MANIFEST_NAME), str(destination / MANIFEST_NAME))
    for entry in json.loads((destination / MANIFEST_NAME).read_text())["files"]:
        target = destination / entry["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        sftp.get(board.release_path(release, *posixpath.normpath(entry["path"]).split("/")), str(target))
    return destination


def _figures(code: int, stdout: str, stderr: str, where: str) -> dict:
    lines = [line for line in stdout.strip().splitlines() if line.startswith("{")]
    if code != 0 or not lines:
        last = stderr.strip().splitlines()
        raise DeployError(f"{where}: the runtime's --bench failed (exit {code}): {last[-1] if last else 'no output'}")
    return json.loads(lines[-1])


def comparison_rows(result: dict) -> list[dict]:
    """Per stage: board and host p50/p95 and how many times slower the board is at p50."""
    board, local = result["board"]["stages_ms"], result["local"]["stages_ms"]
    rows = []
    for stage in list(board) + [s for s in local if s not in board]:
        b, h = board.get(stage, {}), local.get(stage, {})
        ratio = b["p50"] / h["p50"] if b.get("p50") and h.get("p50") else None
        rows.append({"stage": stage, "board_p50": b.get("p50"), "board_p95": b.get("p95"),
                     "host_p50": h.get("p50"), "host_p95": h.get("p95"), "board_over_host": ratio})
    return rows
