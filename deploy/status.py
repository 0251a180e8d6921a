"""`edgepad status`: what runs on a board (release, models, runtime backend) and what the board is."""
from __future__ import annotations

import io
import json

from .manifest import MANIFEST_NAME, ManifestFile
from .pipeline import BoardOptions, open_board
from .release import verify_release
from .ssh import HostSpec

VIM3_SERIAL_PREFIX = "290b"  # Amlogic A311D; a VIM3L's S905D3 reports another prefix

# Asks the release's own runtime which backend it would pick, so status shows what really runs.
RUNTIME_BACKEND_PROBE = (
    "import json, sys; sys.path.insert(0, sys.argv[1]); from runtime.backends import available_backends, "
    "default_backend; print(json.dumps({'default': default_backend(), 'available': available_backends()}))"
)


def board_status(spec: HostSpec, options: BoardOptions, verify: bool = False) -> dict:
    with open_board(spec, options) as board:
        facts = board.op("facts")
        scan = board.op("scan")
        serial = facts.get("cpu_serial") or ""
        status = {
            "host": board.name, "remote_dir": board.root, "current": scan["current"],
            "releases": [r["id"] for r in scan["releases"]], "models": {}, "bundle_versions": {},
            "runtime_backend": None, "available_backends": [],
            "board": {
                "python": facts["python"], "machine": facts["machine"], "cpu_serial_prefix": serial[:4] or None,
                "is_vim3": serial.lower().startswith(VIM3_SERIAL_PREFIX), "npu_driver": facts["npu_driver"],
                "teflon": facts.get("teflon"), "etnaviv": facts.get("etnaviv", False),
            },
        }
        if not scan["current"]:
            return status
        buffer = io.BytesIO()
        board.connection.sftp.getfo(board.release_path(scan["current"], MANIFEST_NAME), buffer)
        manifest = json.loads(buffer.getvalue())
        status["bundle_versions"] = manifest.get("versions", {})
        status["models"] = {name: {"task": card.get("task"), "input": card.get("input"),
                                   "targets": sorted(card.get("targets", {})),
                                   "nbg_format": card.get("targets", {}).get("vim3", {}).get("nbg_format")}
                            for name, card in manifest.get("models", {}).items()}
        probe = board.connection.run([board.python, "-c", RUNTIME_BACKEND_PROBE, board.release_path(scan["current"])])
        if probe.exit_code == 0:
            backends = json.loads(probe.stdout.decode())
            status["runtime_backend"] = backends["default"]
            status["available_backends"] = backends["available"]
        if verify:
            files = [ManifestFile(f["path"], f["sha256"], int(f["size"])) for f in manifest["files"]]
            status["corrupted_files"] = verify_release(board, scan["current"], files)
        return status
