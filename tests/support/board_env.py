"""The stand-in for the VIM3's Python: a Python 3.8 virtual environment holding only the board's packages.

The board runs aarch64 Ubuntu with Python 3.8+, numpy, OpenCV 4 and onnxruntime (or KSNN); no TensorFlow,
no click, nothing from convert/ or deploy/. Tests run runtime/ inside this environment to prove it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BOARD_PYTHON_VERSION = "3.8"
# tflite-runtime 2.14 is the last with Python 3.8 wheels (x86_64 and aarch64): the tflite backend's interpreter
BOARD_PACKAGES = ["numpy<2", "opencv-python-headless>=4.8,<5", "onnxruntime", "tflite-runtime==2.14.0", "pytest"]


def test_cache() -> Path:
    """Where expensive test environments live between runs (CI points it into its clean clone)."""
    default = Path(__file__).resolve().parents[2] / ".cache" / "test"
    return Path(os.environ.get("EDGEPAD_TEST_CACHE", default))


def find_python(version: str) -> Path | None:
    """A `pythonX.Y` on PATH (a user's Ubuntu), or pyenv's (these machines)."""
    found = shutil.which(f"python{version}")
    if found and subprocess.run([found, "-c", "1"], capture_output=True).returncode == 0:
        return Path(found)
    pyenv = shutil.which("pyenv")
    if pyenv:
        versions = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True).stdout.split()
        for candidate in sorted((v for v in versions if v.startswith(version + ".")), reverse=True):
            prefix = subprocess.run([pyenv, "prefix", candidate], capture_output=True, text=True).stdout.strip()
            if prefix and (Path(prefix) / "bin" / "python").exists():
                return Path(prefix) / "bin" / "python"
    return None


def ensure_board_python() -> Path:
    """The board environment's python, created on first use."""
    env = test_cache() / f"board-py{BOARD_PYTHON_VERSION}"
    python = env / "bin" / "python"
    marker = env / ".complete"
    wanted = "\n".join(BOARD_PACKAGES) + "\n"
    if marker.exists() and marker.read_text() == wanted:
        return python
    if marker.exists():  # the board's package list changed: add what is missing, keep the rest
        subprocess.run([str(python), "-m", "pip", "install", "-q", *BOARD_PACKAGES], check=True)
        marker.write_text(wanted)
        return python
    base = find_python(BOARD_PYTHON_VERSION)
    if base is None:
        raise RuntimeError(f"no Python {BOARD_PYTHON_VERSION} found (on PATH or under pyenv) for the board environment")
    shutil.rmtree(env, ignore_errors=True)
    subprocess.run([str(base), "-m", "venv", str(env)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *BOARD_PACKAGES], check=True)
    marker.write_text(wanted)
    return python


if __name__ == "__main__":
    print(ensure_board_python())
