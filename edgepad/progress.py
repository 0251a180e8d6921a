"""Progress on stderr (rich), so stdout stays clean for --json: steps with a spinner, and bars.

The one place edgepad draws progress: every command, convert/ and deploy/ use these two classes.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

from rich.console import Console


def _stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


class Steps:
    """Prints one line per finished step with its duration; a spinner while it runs."""

    def __init__(self, quiet: bool = False):
        self.console = _stderr_console()
        self.quiet = quiet
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, title: str):
        start = time.perf_counter()
        if self.quiet:
            yield
        else:
            with self.console.status(f"{title}…"):
                yield
        seconds = time.perf_counter() - start
        self.timings[title] = seconds
        if not self.quiet:
            self.console.print(f"[green]✓[/green] {title} [dim]({seconds:.1f} s)[/dim]")

    def info(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text)

    def warn(self, text: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {text}")


class Bars:
    """One progress bar per key (a board, the videos of a dataset); safe to update from several threads.

    `unit="bytes"` shows sizes and speed, `unit="items"` done/total. Each bar has a description on its left and
    a dim note on its right (what is being worked on). Updates to a key without a bar are ignored.
    """

    def __init__(self, unit: str = "items", quiet: bool = False):
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        amount = [DownloadColumn(), TransferSpeedColumn()] if unit == "bytes" else [MofNCompleteColumn()]
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), *amount, TimeRemainingColumn(),
                                  TextColumn("[dim]{task.fields[note]}"), console=_stderr_console(), disable=quiet)
        self._tasks: dict[str, int] = {}
        self._totals: dict[str, int] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Bars:
        self._progress.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._progress.stop()

    def start(self, key: str, description: str, total: int) -> None:
        """A new bar for `key`, or the same bar from zero again (a step that is repeated)."""
        with self._lock:
            self._totals[key] = total
            if key in self._tasks:
                self._progress.reset(self._tasks[key], total=total, description=description, note="")
            else:
                self._tasks[key] = self._progress.add_task(description, total=total, note="")

    def update(self, key: str, *, completed: int | None = None, description: str | None = None,
               note: str | None = None) -> None:
        with self._lock:
            if key not in self._tasks:
                return
            fields = {"note": note} if note is not None else {}
            self._progress.update(self._tasks[key], completed=completed, description=description, **fields)

    def advance(self, key: str, amount: int) -> None:
        with self._lock:
            if key in self._tasks:
                self._progress.advance(self._tasks[key], amount)

    def finish(self, key: str) -> None:
        with self._lock:
            if key in self._tasks:
                self._progress.update(self._tasks[key], completed=self._totals[key])
