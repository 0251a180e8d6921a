"""The header of a Vivante network binary (NBG): the only place that says which NPU it was compiled for.

Magic `VPMN`, then the 32-bit little-endian target PID at byte 8. The toolkit does not refuse a target it does not
know (it compiles for some default NPU instead), so the converter checks every NBG it writes, and the board's
loader checks that an NBG and its library are for the same NPU. Standard library only: this goes to the board.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

NBG_MAGIC = b"VPMN"
PID_OFFSET = 8


class NbgHeaderError(ValueError):
    """Not a network binary: the message names the file."""


@dataclass(frozen=True)
class NbgHeader:
    magic: str
    pid: int

    def to_json(self) -> dict:
        return {"magic": self.magic, "pid": f"0x{self.pid:x}"}


def read_nbg_header(path) -> NbgHeader:
    with open(str(path), "rb") as f:
        data = f.read(PID_OFFSET + 4)
    if len(data) < PID_OFFSET + 4 or data[:4] != NBG_MAGIC:
        raise NbgHeaderError(f"{path}: not a Vivante network binary (expected magic {NBG_MAGIC.decode()!r} at "
                             f"byte 0, found {data[:4]!r})")
    (pid,) = struct.unpack_from("<I", data, PID_OFFSET)
    return NbgHeader(data[:4].decode(), pid)


def target_pid(target: str) -> int:
    """VIPNANOQI_PID0X88 -> 0x88: the PID an NBG compiled for that NPU target carries."""
    return int(target.rsplit("_PID", 1)[1], 16)
