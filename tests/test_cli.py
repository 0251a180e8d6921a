"""The installed `edgepad` command, run as a user runs it: a fresh process each time."""
from __future__ import annotations

import json
import subprocess
import sys

from support.paths import LEGACY_H5

EDGEPAD = [sys.executable, "-m", "edgepad"]


def test_help_is_instant_and_does_not_import_tensorflow():
    code = ("import sys; from edgepad.cli import cli; cli(['--help'], standalone_mode=False); "
            "print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', 'onnxruntime', 'paramiko')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "convert" in result.stdout


def test_every_command_is_registered():
    """A static list: no command disappears because one of its imports fails (`edgepad bench` once did)."""
    from edgepad.cli import cli

    assert sorted(cli.commands) == ["bench", "bundle", "convert", "deploy", "evaluate", "extract", "models",
                                    "rollback", "run", "status", "toolkit", "train"]


def test_convert_in_a_fresh_process_writes_report_and_card(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([*EDGEPAD, "convert", str(LEGACY_H5 / "pad_mobilenet.h5"), "-o", str(out), "--to", "onnx",
                             "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["onnx"]["passed"]
    assert "Traceback" not in result.stderr
    assert "✓" in result.stderr  # progress goes to stderr, the report alone to stdout
    assert json.loads((out / "report.json").read_text())["onnx"] == report["onnx"]
    assert (out / "edgepad.json").exists() and (out / "model.onnx").exists()


def test_failure_in_a_fresh_process_is_one_line(tmp_path):
    result = subprocess.run([*EDGEPAD, "convert", str(tmp_path / "missing.h5"), "-o", str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.h5'}: no such file"]
    assert not (tmp_path / "o").exists()
