"""The board's NPU driver (galcore) against the release's NBG format: `edgepad status` shows both, deploy refuses a
pair documented not to load (deploy/npu_driver.py) before it changes anything on the board, and warns on a pair no
document covers.

The loopback board has no galcore. A test gives it one the way Khadas' images expose it to `modinfo galcore`: the
board's Python is a wrapper that puts a stand-in `modinfo` first on PATH (as tests/test_npu_driver_facts.py does for
dmesg), which prints the module's `version:` field.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.deploy_fixtures import LoopbackBoard, copy_bundle

pytestmark = pytest.mark.board
EDGEPAD = [sys.executable, "-m", "edgepad"]
KHADAS_DRIVER = "6.4.8.7.310723AAA"  # KSNN 1.3/1.4's driver: Khadas' NBGs for it are format 0x0001000f


def board_with_galcore(board: LoopbackBoard, tmp_path: Path, version: str) -> LoopbackBoard:
    """The same loopback board, its Python run through a wrapper whose PATH holds a stand-in `modinfo galcore`."""
    stand_ins = tmp_path / "board_bin"
    stand_ins.mkdir()
    modinfo = stand_ins / "modinfo"  # stand-in for the board's kmod: the galcore module's fields
    modinfo.write_text("#!/bin/sh\n[ \"$1\" = galcore ] || exit 1\n"
                       "echo 'filename:       /lib/modules/4.9.241/kernel/drivers/amlogic/npu/galcore.ko'\n"
                       f"echo 'version:        {version}'\necho 'license:        Dual MIT/GPL'\n")
    modinfo.chmod(0o755)
    python = tmp_path / "board_python"
    python.write_text(f"#!/bin/sh\nPATH='{stand_ins}':\"$PATH\" exec '{board.python}' \"$@\"\n")
    python.chmod(0o755)
    return LoopbackBoard(board.sshd, board.remote_dir, board.known_hosts, python)


def bundle_with_nbg_format(source: Path, destination: Path, nbg_format: str, toolkit_version: str) -> Path:
    """The classifier bundle whose card says its NBG has this format (what the vim3 target records from the NBG
    header); the files are the CPU model's: nothing here reaches the NPU."""
    from edgepad.deploy import manifest as manifest_io
    from edgepad.runtime.card import Vim3Entry

    bundle = copy_bundle(source, destination)
    manifest = manifest_io.load(bundle)
    card = manifest.models["classifier"]
    card.targets.vim3 = Vim3Entry(backend="acuitylite", toolkit="acuitylite", toolkit_version=toolkit_version,
                                  board="vim3", target="VIPNANOQI_PID0X88", nbg_format=nbg_format)
    (bundle / "models" / "classifier" / "edgepad.json").write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    manifest_io.seal(bundle, manifest.versions, manifest.models)
    return bundle


def deploy_json(board: LoopbackBoard, bundle: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    ran = subprocess.run(EDGEPAD + ["deploy", str(bundle), "--json", *extra, *board.cli_args()],
                         capture_output=True, text=True)
    return ran, json.loads(ran.stdout)


def board_tree(board: LoopbackBoard) -> list[str]:
    root = board.remote_dir
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_deploy_refuses_an_nbg_newer_than_the_boards_driver_and_changes_nothing(board, small_bundle_dir, tmp_path):
    khadas_board = board_with_galcore(board, tmp_path, KHADAS_DRIVER)
    first = bundle_with_nbg_format(small_bundle_dir, tmp_path / "khadas_format", "0x0001000f", "khadas-sdk 6.4.8.7")
    ran, good = deploy_json(khadas_board, first, "--no-health-check")
    assert ran.returncode == 0, ran.stderr + ran.stdout
    assert good["npu_driver"]["driver"] == KHADAS_DRIVER and good["npu_driver"]["source"] == "modinfo galcore"
    assert good["npu_driver"]["verdict"] == "compatible"
    assert khadas_board.current() == good["release"]
    before = board_tree(khadas_board)

    # acuitylite 6.45.0's vsi_sdk writes NBG format 0x00010020: newer than galcore 6.4.8.7 reads
    newer = bundle_with_nbg_format(small_bundle_dir, tmp_path / "acuitylite_format", "0x00010020", "6.57.1")
    ran, refused = deploy_json(khadas_board, newer)
    assert ran.returncode != 0 and refused["passed"] is False
    assert refused["npu_driver"]["verdict"] == "incompatible"
    (check,) = refused["npu_driver"]["models"]
    assert check["model"] == "classifier" and check["nbg_format"] == "0x00010020"
    error_lines = [line for line in ran.stderr.splitlines() if line.strip()]
    assert len(error_lines) == 1 and "Traceback" not in ran.stderr
    for words in ("0x00010020", KHADAS_DRIVER, "classifier", "nothing was changed"):
        assert words in refused["error"] and words in error_lines[0]
    assert board_tree(khadas_board) == before  # no upload, no lock file, no staging folder
    assert khadas_board.current() == good["release"]

    ran = subprocess.run(EDGEPAD + ["status", "--json", *khadas_board.cli_args()], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    status = json.loads(ran.stdout)
    assert status["board"]["npu_driver"] == KHADAS_DRIVER and status["board"]["npu_driver_source"] == "modinfo galcore"
    assert status["models"]["classifier"]["nbg_format"] == "0x0001000f"
    assert status["models"]["classifier"]["toolkit"] == "acuitylite khadas-sdk 6.4.8.7"
    assert status["npu_driver_check"]["verdict"] == "compatible"
    text = subprocess.run(EDGEPAD + ["status", *khadas_board.cli_args()], capture_output=True, text=True).stdout
    assert f"galcore {KHADAS_DRIVER} (modinfo galcore)" in text and "0x0001000f" in text


def test_a_board_without_galcore_is_said_so_and_the_deploy_only_warns(board, small_bundle_dir, tmp_path):
    bundle = bundle_with_nbg_format(small_bundle_dir, tmp_path / "acuitylite_format", "0x00010020", "6.57.1")
    ran, result = deploy_json(board, bundle, "--no-health-check")
    assert ran.returncode == 0, ran.stderr + ran.stdout
    assert result["npu_driver"]["driver"] is None and result["npu_driver"]["verdict"] == "unknown"
    assert "no galcore" in result["npu_driver"]["source"]
    assert "warning: NPU driver" in ran.stderr and "no galcore" in ran.stderr
    assert board.current() == result["release"]
