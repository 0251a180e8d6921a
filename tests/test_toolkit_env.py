"""`edgepad toolkit install` picks a Python acuitylite has wheels for, and refuses one it has none for."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edgepad.convert.vim3.toolkit_env import SUPPORTED_PYTHONS, find_base_python

EDGEPAD = str(Path(sys.executable).with_name("edgepad"))


def _version(python: Path) -> str:
    return subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_finds_a_python_the_wheels_exist_for():
    assert _version(find_base_python()) in SUPPORTED_PYTHONS


def test_install_refuses_a_python_without_wheels(tmp_path):
    """This venv's Python 3.11 has no acuitylite wheel: one line naming the versions that do, nothing created."""
    result = subprocess.run([EDGEPAD, "toolkit", "install", "--python", sys.executable, "--home", str(tmp_path / "tk")],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"error: --python {sys.executable}: is Python {sys.version_info[0]}.{sys.version_info[1]}; acuitylite 6.57.1 "
        f"has wheels only for 3.8, 3.10, 3.12"]
    assert not (tmp_path / "tk").exists()
