"""Step-by-step progress on stderr, so stdout stays clean for --json."""
from __future__ import annotations

import time
from contextlib import contextmanager

from rich.console import Console


class Steps:
    """Prints one line per finished step with its duration; a spinner while it runs."""

    def __init__(self, quiet: bool = False):
        self.console = Console(stderr=True, highlight=False)
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
