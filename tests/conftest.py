"""Shared, expensive test setup: fixture paths, and models converted once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from support.paths import FACES, FIXTURES, LEGACY_H5  # noqa: F401  (LEGACY_H5 for fixtures below)

# loopback sshd, bundles and boards for the deploy tests; models, bundles and photos for the runtime tests
pytest_plugins = ["support.deploy_fixtures", "support.runtime_fixtures"]


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """Real face photos: scikit-image's astronaut.png, insightface's t1.jpg (6 people) and an aligned 112x112 crop."""
    return FACES


@pytest.fixture(scope="session")
def board_python() -> Path:
    """Python 3.8 with only the board's packages (numpy, OpenCV 4, onnxruntime)."""
    from support.board_env import ensure_board_python

    return ensure_board_python()


@pytest.fixture(scope="session")
def toolkit():
    """The toolkit environment .ci/install.sh made (`edgepad toolkit install`, under $EDGEPAD_HOME)."""
    from edgepad.convert.vim3.toolkit_env import default_home, require_toolkit
    from edgepad.errors import ToolkitError

    try:
        return require_toolkit()
    except ToolkitError as error:
        pytest.fail(f"{error} (looked in {default_home()}; CI sets EDGEPAD_HOME=$PWD/.cache/edgepad)")
