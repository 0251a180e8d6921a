"""Where the test data lives. Test modules import it from here: `from conftest import` would be ambiguous with
tests/runtime_board/conftest.py."""
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LEGACY_H5 = FIXTURES / "legacy_h5"
FACES = FIXTURES / "faces"
