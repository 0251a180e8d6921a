"""Read the header of a Vivante network binary (NBG): the only place that tells which NPU it was compiled for.

The toolkit does not refuse a target it does not know; it compiles for some default NPU instead. So every NBG is
checked here before edgepad reports success: magic `VPMN`, the 32-bit little-endian format word at byte 4 (its
high 16 bits are the major: 0x0001000F in Khadas' VIM3 NBGs, 0x00010020 from acuitylite 6.27-6.45's SDK, 0x00020005
from 6.48-6.57.1's), then the target PID at byte 8.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from edgepad.errors import ExportError

NBG_MAGIC = b"VPMN"
FORMAT_OFFSET = 4
PID_OFFSET = 8


@dataclass(frozen=True)
class NbgHeader:
    magic: str
    pid: int
    format_word: int = 0

    @property
    def format_major(self) -> int:
        return self.format_word >> 16

    def to_json(self) -> dict:
        return {"magic": self.magic, "pid": f"0x{self.pid:x}", "format": f"0x{self.format_word:08x}",
                "format_major": self.format_major}


def read_nbg_header(path: Path) -> NbgHeader:
    data = Path(path).read_bytes()[: PID_OFFSET + 4]
    if len(data) < PID_OFFSET + 4 or data[:4] != NBG_MAGIC:
        raise ExportError(f"{path}: not a Vivante network binary (expected magic {NBG_MAGIC.decode()!r} at byte 0, "
                          f"found {data[:4]!r}); the toolkit's log says why")
    (pid,) = struct.unpack_from("<I", data, PID_OFFSET)
    (format_word,) = struct.unpack_from("<I", data, FORMAT_OFFSET)
    return NbgHeader(data[:4].decode(), pid, format_word)


def check_nbg_header(path: Path, expected_pid: int, target: str, expected_major: int | None = None) -> NbgHeader:
    """The header, or one line saying the binary is for another NPU or in another format (and so must not ship)."""
    header = read_nbg_header(path)
    if expected_major is not None and header.format_major != expected_major:
        raise ExportError(f"{path}: NBG format 0x{header.format_word:08x}, not the {expected_major}.x asked for "
                          f"(--nbg-format {expected_major}); the toolkit's vsi_sdk wrote another format: run "
                          "`edgepad toolkit install` and convert again")
    if header.pid != expected_pid:
        raise ExportError(f"{path}: compiled for NPU PID 0x{header.pid:x}, not 0x{expected_pid:x} ({target}): the "
                          f"toolkit does not know {target} and silently compiled for another NPU; nothing was written")
    return header
