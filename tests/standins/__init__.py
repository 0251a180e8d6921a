"""Stand-ins for tools that cannot exist on these machines (a Docker engine, Khadas' SDK), each named as one.

`install_standins(folder)` puts a `docker` stand-in on a bin folder and builds a fake aml_npu_sdk whose
acuity-toolkit/bin/pegasus is the pegasus stand-in. Both record every call (argv, cwd) as JSON lines in
$EDGEPAD_STANDIN_RECORD and reject any command line the real tools' documentation does not describe.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).parent


def _wrapper(path: Path, script: Path) -> None:
    path.write_text(f"#!/bin/sh\nexec {sys.executable} {script} \"$@\"\n")
    path.chmod(0o755)


def install_standins(folder: Path) -> tuple[Path, Path, Path]:
    """(bin folder to put first on PATH, fake SDK root, record file)."""
    bin_dir, sdk = folder / "bin", folder / "aml_npu_sdk"
    (sdk / "acuity-toolkit" / "bin" / "vcmdtools").mkdir(parents=True, exist_ok=True)
    bin_dir.mkdir(parents=True, exist_ok=True)
    _wrapper(bin_dir / "docker", HERE / "docker_standin.py")
    _wrapper(sdk / "acuity-toolkit" / "bin" / "pegasus", HERE / "pegasus_standin.py")
    (sdk / "acuity-toolkit" / "bin" / "VERSION").write_text("StandIn pegasus (not Khadas' SDK)\n")
    return bin_dir, sdk, folder / "calls.jsonl"


def recorded_calls(record: Path) -> list[dict]:
    if not record.is_file():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line.strip()]


def record_call(tool: str, argv: list[str]) -> None:
    record = os.environ.get("EDGEPAD_STANDIN_RECORD")
    if record:
        with open(record, "a") as f:
            f.write(json.dumps({"tool": tool, "argv": argv, "cwd": os.getcwd()}) + "\n")
