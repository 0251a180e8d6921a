"""Write an output folder completely or not at all: build it beside the target, rename it into place at the end."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from edgepad.errors import UsageError


@contextmanager
def staged_output_dir(out: str | os.PathLike, force: bool = False, option: str = "-o"):
    """Yield an empty folder; on success it becomes `out`, on any failure it is removed and `out` is untouched."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{option} {out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise UsageError(f"{option} {out}: folder exists and is not empty; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
