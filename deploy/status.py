"""`edgepad status`: what runs on a board (release, models, runtime backend) and what the board is."""
from __future__ import annotations

import io
import json

from .manifest import MANIFEST_NAME, ManifestFile, model_cards
from .npu_driver import check_release, parse_driver_version
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
        if facts.get("npu_driver") is not None and parse_driver_version(facts["npu_driver"]) is None:
            # the board is not trusted: a version that does not parse is not shown, it is said to be unreadable
            facts["npu_driver"], facts["npu_driver_source"] = None, "the board's galcore version does not parse"
        status = {
            "host": board.name, "remote_dir": board.root, "current": scan["current"],
            "releases": [r["id"] for r in scan["releases"]], "models": {}, "bundle_versions": {},
            "runtime_backend": None, "available_backends": [],
            "board": {
                "python": facts["python"], "machine": facts["machine"], "cpu_serial_prefix": serial[:4] or None,
                "is_vim3": serial.lower().startswith(VIM3_SERIAL_PREFIX), "npu_driver": facts["npu_driver"],
                "npu_driver_source": facts.get("npu_driver_source"),
                "teflon": facts.get("teflon"), "etnaviv": facts.get("etnaviv", False),
            },
        }
        if not scan["current"]:
            return status
        buffer = io.BytesIO()
        board.connection.sftp.getfo(board.release_path(scan["current"], MANIFEST_NAME), buffer)
        manifest = json.loads(buffer.getvalue())
        status["bundle_versions"] = manifest.get("versions", {})
        cards = model_cards(manifest, f"{board.name}:{board.release_path(scan['current'], MANIFEST_NAME)}")
        status["models"] = {name: {"task": card.task, "input": card.to_dict()["input"],
                                   "targets": sorted(card.targets.names()),
                                   "nbg_format": card.targets.vim3.nbg_format if card.targets.vim3 else None,
                                   "toolkit": _toolkit(card)}
                            for name, card in cards.items()}
        # the board's driver beside what compiled the current release's NBGs, judged as deploy judges it
        status["npu_driver_check"] = check_release(cards, facts["npu_driver"], facts.get("npu_driver_source")).to_json()
        probe = board.connection.run([board.python, "-c", RUNTIME_BACKEND_PROBE, board.release_path(scan["current"])])
        if probe.exit_code == 0:
            backends = json.loads(probe.stdout.decode())
            status["runtime_backend"] = backends["default"]
            status["available_backends"] = backends["available"]
        if verify:
            files = [ManifestFile(f["path"], f["sha256"], int(f["size"])) for f in manifest["files"]]
            status["corrupted_files"] = verify_release(board, scan["current"], files)
        return status


def _toolkit(card) -> str | None:
    entry = card.targets.vim3
    if entry is None:
        return None
    return " ".join(str(part) for part in (entry.toolkit, entry.toolkit_version) if part) or None
