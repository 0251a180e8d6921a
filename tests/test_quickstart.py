"""The light quick start, as a new user runs it: an ordinary (non-root) account, a clean clone, no apt-get, no NPU
toolkit, no Python 3.8. Installs edgepad into the clone's .venv from the package index, so it is slow."""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
USER = "edgepad-quickstart"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plain_user():
    if os.geteuid() != 0:
        pytest.skip("creating the non-root user of this test needs root (CI runs as root)")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", USER], check=True)
    return pwd.getpwnam(USER)


def test_quickstart_from_a_clean_clone_without_root(plain_user, tmp_path):
    home = Path(plain_user.pw_dir)
    clone = home / "edgepad"
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(clone)], check=True)
    # A plain login environment: no pyenv, no EDGEPAD_HOME, no root-only tools on PATH.
    env = {"HOME": str(home), "USER": USER, "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    completed = subprocess.run(["runuser", "-u", USER, "--", "env", "-i", *[f"{k}={v}" for k, v in env.items()],
                                "bash", "scripts/quickstart.sh"], cwd=str(clone), capture_output=True, text=True,
                               timeout=3600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    out = clone / "out" / "quickstart"
    assert (out / "t1_faces.png").is_file()
    for name in ("model.onnx", "model.prototxt", "model.caffemodel", "model.tflite", "report.json"):
        assert (out / "classifier" / name).is_file(), name
    assert len(list((out / "faces").glob("*.png"))) >= 7  # 6 people in t1.jpg, the astronaut, the aligned crop
    assert not (home / ".cache" / "edgepad" / "toolkit").exists() and not (clone / ".cache" / "edgepad").exists()
