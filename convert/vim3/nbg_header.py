"""Read the header of a Vivante network binary (NBG): the only place that tells which NPU it was compiled for.

The toolkit does not refuse a target it does not know; it compiles for some default NPU instead. So every NBG is
checked here before edgepad reports success: magic `VPMN`, then the 32-bit little-endian target PID at byte 8.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from edgepad.errors import ExportError

NBG_MAGIC = b"VPMN"
PID_OFFSET = 8


FORMAT_OFFSET = 4  # the NBG format word: 0x00020005 from acuitylite 6.48-6.57.1, 0x0001000F in Khadas' VIM3 NBGs


@dataclass(frozen=True)
class NbgHeader:
    magic: str
    pid: int
    format: int = 0

    def to_json(self) -> dict:
        return {"magic": self.magic, "pid": f"0x{self.pid:x}", "format": f"0x{self.format:08x}"}


def read_nbg_header(path: Path) -> NbgHeader:
    data = Path(path).read_bytes()[: PID_OFFSET + 4]
    if len(data) < PID_OFFSET + 4 or data[:4] != NBG_MAGIC:
        raise ExportError(f"{path}: not a Vivante network binary (expected magic {NBG_MAGIC.decode()!r} at byte 0, "
                          f"found {data[:4]!r}); the toolkit's log says why")
    (pid,) = struct.unpack_from("<I", data, PID_OFFSET)
    (word,) = struct.unpack_from("<I", data, FORMAT_OFFSET)
    return NbgHeader(data[:4].decode(), pid, word)


def check_nbg_header(path: Path, expected_pid: int, target: str) -> NbgHeader:
    """The header, or one line saying the binary is for another NPU (and so must not ship)."""
    header = read_nbg_header(path)
    if header.pid != expected_pid:
        raise ExportError(f"{path}: compiled for NPU PID 0x{header.pid:x}, not 0x{expected_pid:x} ({target}): the "
                          f"toolkit does not know {target} and silently compiled for another NPU; nothing was written")
    return header
