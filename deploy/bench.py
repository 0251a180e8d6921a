"""`edgepad bench`: the runtime's `--bench` on the board and the same on the host, side by side, plus a PNG.

The board runs its current release; the host runs its OWN installed runtime (edgepad.runtime) on the same
models and image. The board is not trusted: from it the host takes model files only (models/...), each path
checked (plain relative, inside the release once resolved on the board, inside the host's temporary folder) and
each sha256 checked against --bundle's manifest when given, else the board's own. Nothing fetched is executed.
"""
from __future__ import annotations

import hashlib
import io
import json
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from edgepad.errors import DeployError, InputFileError

from . import manifest as manifest_io
from .health import runtime_command
from .manifest import MANIFEST_NAME
from .pipeline import BoardOptions, open_board
from .remote import Board
from .ssh import HostSpec

BENCH_TIMEOUT_S = 1800
MODELS_PREFIX = "models/"
MANIFEST_MAX_BYTES = 16 << 20


def bench(spec: HostSpec, options: BoardOptions, image: Path, repeats: int, bundle: Path | None = None,
          backend: str | None = None) -> dict:
    image = Path(image)
    if not image.is_file():
        raise InputFileError(f"--image {image}: no such file")
    with open_board(spec, options) as board, tempfile.TemporaryDirectory(prefix="edgepad-bench-") as scratch:
        current = board.op("scan")["current"]
        if not current:
            raise DeployError(f"{board.name}: nothing deployed under {board.root}; run `edgepad deploy` first")
        expected = expected_models(Path(bundle)) if bundle else None
        local_models = fetch_models(board, current, Path(scratch) / "release", expected)
        board_figures = _bench_on_board(board, current, image, repeats, backend)
        # The NPU exists only on the board: the host runs the CPU backend (by default the runtime would pick the
        # NPU's emulator for models with NPU files)
        host_backend = "onnxruntime" if backend in (None, "ksnn") else backend
        host_figures = bench_on_host(local_models, image, repeats, host_backend)
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
    """This host's installed runtime (never a runtime/ folder of the bundle) on the bundle's models."""
    argv = [sys.executable, "-m", "edgepad.runtime.vim3_infer", "--bundle", str(bundle), "--image", str(image),
            "--bench", str(repeats), "--json"] + (["--backend", backend] if backend else [])
    # cwd is sys.path[0] under -m: the models folder, which holds no Python package of ours
    ran = subprocess.run(argv, capture_output=True, text=True, timeout=BENCH_TIMEOUT_S, cwd=bundle)
    return _figures(ran.returncode, ran.stdout, ran.stderr, "this host")


def expected_models(bundle: Path) -> dict[str, tuple[str, int]]:
    manifest = manifest_io.load(bundle)
    return {f.path: (f.sha256, f.size) for f in manifest.files if f.path.startswith(MODELS_PREFIX)}


def fetch_models(board: Board, release: str, destination: Path,
                 expected: dict[str, tuple[str, int]] | None = None) -> Path:
    """The model files of the board's release, checked, into destination/models/. `expected` ({path: (sha256,
    size)}, from the host's bundle) wins over the board's manifest, which is only trusted for what it lists."""
    sftp = board.connection.sftp
    where = f"{board.name}: release {release}"
    release_dir = sftp.normalize(board.release_path(release))
    source = "--bundle" if expected is not None else "board's"
    if expected is None:
        expected = _board_manifest_models(board, release, where)
    if not expected:
        raise DeployError(f"{where}: its manifest lists no models/ files; deploy a bundle again")
    for path in expected:  # every path checked before anything is fetched
        try:
            manifest_io.check_relative_path(path, where)
        except InputFileError:
            raise DeployError(f"{where}: manifest path {path!r} is not a plain relative path; refusing to fetch it "
                              "(the release was altered: deploy a bundle again)") from None
    destination.mkdir(parents=True)
    root = destination.resolve()
    for path, (digest, size) in sorted(expected.items()):
        remote = board.release_path(release, *path.split("/"))
        target = (destination / path).resolve()
        if not target.is_relative_to(root):
            raise DeployError(f"{where}: {path} would be written outside {root}; refusing it")
        try:
            resolved = sftp.normalize(remote)  # realpath on the board: a link out of the release is refused
            if not resolved.startswith(release_dir + "/"):
                raise DeployError(f"{where}: {path} resolves to {resolved}, outside the release; refusing to fetch it")
            target.parent.mkdir(parents=True, exist_ok=True)
            got, length = _download(sftp, remote, target, size)
        except FileNotFoundError:
            raise DeployError(f"{where}: {path} is missing on the board; deploy the bundle again") from None
        if length != size or got != digest:
            raise DeployError(f"{where}: {path} on the board differs from the {source} manifest (sha256 "
                              f"{got[:12]}…, {length} bytes instead of {size}); deploy the bundle again")
    return destination


def _board_manifest_models(board: Board, release: str, where: str) -> dict[str, tuple[str, int]]:
    sftp = board.connection.sftp
    remote = board.release_path(release, MANIFEST_NAME)
    if sftp.stat(remote).st_size > MANIFEST_MAX_BYTES:
        raise DeployError(f"{where}: its {MANIFEST_NAME} is larger than {MANIFEST_MAX_BYTES >> 20} MB; refusing it")
    buffer = io.BytesIO()
    sftp.getfo(remote, buffer)
    try:
        entries = json.loads(buffer.getvalue())["files"]
        models = {}
        for entry in entries:
            path = str(entry["path"])
            if path.startswith(MODELS_PREFIX) or path.startswith("/") or ".." in path.split("/"):
                models[path] = (str(entry["sha256"]), int(entry["size"]))  # bad paths are refused, not skipped
        return models
    except (ValueError, KeyError, TypeError):
        raise DeployError(f"{where}: its {MANIFEST_NAME} is not an edgepad manifest; deploy a bundle again") from None


def _download(sftp, remote: str, target: Path, size: int) -> tuple[str, int]:
    """Stream one file, hashing it, stopping past `size` bytes (a board cannot fill the host's disk)."""
    digest, length = hashlib.sha256(), 0
    with sftp.open(remote, "rb") as source, open(target, "xb") as out:
        source.prefetch(size)
        while chunk := source.read(1 << 20):
            length += len(chunk)
            if length > size:
                break
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest(), length


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
