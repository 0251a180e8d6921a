"""Every NBG the vim3 target writes is checked before edgepad reports success: the toolkit does not refuse a target
it does not know, it compiles for some default NPU instead. The header reader is runtime/nbg_header.py."""
from __future__ import annotations

from pathlib import Path

from edgepad.errors import ExportError
from edgepad.runtime.nbg_header import NbgHeader, NbgHeaderError, read_nbg_header


def check_nbg_header(path: Path, expected_pid: int, target: str) -> NbgHeader:
    """The header, or one line saying the binary is for another NPU (and so must not ship)."""
    try:
        header = read_nbg_header(path)
    except NbgHeaderError as error:
        raise ExportError(f"{error}; the toolkit's log says why") from None
    if header.pid != expected_pid:
        raise ExportError(f"{path}: compiled for NPU PID 0x{header.pid:x}, not 0x{expected_pid:x} ({target}): the "
                          f"toolkit does not know {target} and silently compiled for another NPU; nothing was written")
    return header
