"""`edgepad toolkit install` picks a Python acuitylite has wheels for, and refuses one it has none for."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edgepad.convert.vim3.toolkit_env import SUPPORTED_PYTHONS, find_base_python

from support.tmpfs import mounted_tmpfs

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


def test_install_refuses_a_disk_too_small_before_creating_anything(tmp_path):
    """A disk that fills half-way through torch leaves a broken venv and pip's OSError deep in a log: a real 64 MB
    tmpfs as EDGEPAD_HOME gets one line naming the free space, the need and the fix, and no venv."""
    with mounted_tmpfs(tmp_path / "small-disk", "64m", "a small disk") as small_disk:
        result = subprocess.run([EDGEPAD, "toolkit", "install", "--home", str(small_disk / "tk")],
                                capture_output=True, text=True)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: 64.0 MB free at "), lines
        assert "needs about 11.0 GB" in lines[0] and "EDGEPAD_HOME" in lines[0]
        assert not (small_disk / "tk" / "venv").exists()
