"""Upload progress on stderr (rich), one bar per board, safe to share between the threads of a multi-host deploy."""
from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .release import DeployObserver


class UploadBars(DeployObserver):
    def __init__(self, quiet: bool = False):
        self.console = Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=self.console,
                                 transient=False, disable=quiet)
        self.tasks: dict[str, int] = {}
        self.lock = threading.Lock()
        self.totals: dict[str, int] = {}

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *_exc):
        self.progress.stop()

    def phase(self, host: str, name: str) -> None:
        with self.lock:
            if host in self.tasks:
                self.progress.update(self.tasks[host], description=f"{host} {name}")

    def upload_start(self, host: str, files: int, total_bytes: int) -> None:
        with self.lock:
            description = f"{host} upload ({files} files)"
            self.totals[host] = max(total_bytes, 1)
            if host in self.tasks:  # files sent again after the sha256 check
                self.progress.reset(self.tasks[host], total=self.totals[host], description=description)
            else:
                self.tasks[host] = self.progress.add_task(description, total=self.totals[host])

    def bytes_sent(self, host: str, path: str, sent: int) -> None:
        self.progress.advance(self.tasks[host], sent)

    def upload_end(self, host: str) -> None:
        with self.lock:
            self.progress.update(self.tasks[host], completed=self.totals[host])
