"""The compilers the vim3 target can use (`--npu-toolkit`), by name. Each is a module with DISPLAY_NAME,
check_target(target, options) and compile(...) -> NpuCompilation."""
from __future__ import annotations

from edgepad.errors import UsageError

from . import acuitylite, khadas_sdk

COMPILERS = {"acuitylite": acuitylite, "khadas-sdk": khadas_sdk}


def compiler(name: str):
    try:
        return COMPILERS[name]
    except KeyError:
        raise UsageError(f"--npu-toolkit {name}: choose {' or '.join(COMPILERS)}") from None
