"""The header of a Vivante network binary (NBG): the only place that says which NPU it was compiled for.

Magic `VPMN`, the 32-bit little-endian format word at byte 4 (its high 16 bits are the major: 0x0001000F in
Khadas' VIM3 NBGs, 0x00010020 from acuitylite 6.27-6.45's SDK, 0x00020005 from 6.48-6.57.1's), then the target
PID at byte 8. The toolkit does not refuse a target it does not know (it compiles for some default NPU instead), so
the converter checks every NBG it writes, and the board's loader checks that an NBG and its library are for the
same NPU. Standard library only: this goes to the board.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

NBG_MAGIC = b"VPMN"
FORMAT_OFFSET = 4
PID_OFFSET = 8


class NbgHeaderError(ValueError):
    """Not a network binary: the message names the file."""


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


def read_nbg_header(path) -> NbgHeader:
    with open(str(path), "rb") as f:
        data = f.read(PID_OFFSET + 4)
    if len(data) < PID_OFFSET + 4 or data[:4] != NBG_MAGIC:
        raise NbgHeaderError(f"{path}: not a Vivante network binary (expected magic {NBG_MAGIC.decode()!r} at "
                             f"byte 0, found {data[:4]!r})")
    (pid,) = struct.unpack_from("<I", data, PID_OFFSET)
    (format_word,) = struct.unpack_from("<I", data, FORMAT_OFFSET)
    return NbgHeader(data[:4].decode(), pid, format_word)


def target_pid(target: str) -> int:
    """VIPNANOQI_PID0X88 -> 0x88: the PID an NBG compiled for that NPU target carries."""
    return int(target.rsplit("_PID", 1)[1], 16)
