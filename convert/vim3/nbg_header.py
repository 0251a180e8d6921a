"""Every NBG the vim3 target writes is checked before edgepad reports success: the toolkit does not refuse a target
it does not know, it compiles for some default NPU instead; and its vsi_sdk decides the NBG format. The header reader
is runtime/nbg_header.py."""
from __future__ import annotations

from pathlib import Path

from edgepad.errors import ExportError
from edgepad.runtime.nbg_header import NbgHeader, NbgHeaderError, read_nbg_header


def check_nbg_header(path: Path, expected_pid: int, target: str, expected_major: int | None = None) -> NbgHeader:
    """The header, or one line saying the binary is for another NPU or in another format (and so must not ship)."""
    try:
        header = read_nbg_header(path)
    except NbgHeaderError as error:
        raise ExportError(f"{error}; the toolkit's log says why") from None
    if expected_major is not None and header.format_major != expected_major:
        raise ExportError(f"{path}: NBG format 0x{header.format_word:08x}, not the {expected_major}.x asked for "
                          f"(--nbg-format {expected_major}); the toolkit's vsi_sdk wrote another format: run "
                          "`edgepad toolkit install` and convert again")
    if header.pid != expected_pid:
        raise ExportError(f"{path}: compiled for NPU PID 0x{header.pid:x}, not 0x{expected_pid:x} ({target}): the "
                          f"toolkit does not know {target} and silently compiled for another NPU; nothing was written")
    return header
