"""The runtime's own suite, run by the board's Python (3.8, numpy, OpenCV, onnxruntime only).

tests/test_runtime_board.py starts it with EDGEPAD_BOARD_BUNDLE pointing at a bundle built on the host;
`import runtime` then imports the bundle's copy, as on the board. Without the variable these tests skip.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BUNDLE = os.environ.get("EDGEPAD_BOARD_BUNDLE")
EMBEDDING = os.environ.get("EDGEPAD_BOARD_EMBEDDING")  # an embedding model's convert output (host-made)
FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # ksnn_standin
if BUNDLE:
    sys.path.insert(0, BUNDLE)


def pytest_collection_modifyitems(config, items):
    if BUNDLE:
        return
    skip = pytest.mark.skip(reason="board-side suite: run through tests/test_runtime_board.py (needs "
                            "EDGEPAD_BOARD_BUNDLE)")
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def bundle() -> Path:
    return Path(BUNDLE)


@pytest.fixture(scope="session")
def faces() -> Path:
    return FACES


@pytest.fixture(scope="session")
def embedding_model() -> Path:
    if not EMBEDDING:
        pytest.fail("EDGEPAD_BOARD_EMBEDDING is not set: tests/test_runtime_board.py passes an embedding model's "
                    "convert output")
    return Path(EMBEDDING)
