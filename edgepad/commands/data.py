"""`edgepad extract`, `edgepad train`, `edgepad evaluate`: the seed's data workflow, from SiW videos to PAD metrics."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgepad.cli import verbose_option


def register(cli: click.Group) -> None:
    cli.add_command(extract)
    cli.add_command(train)
    cli.add_command(evaluate)


@click.command()
@click.argument("root", type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path),
              help="Output folder: OUT/<split>/<label>/<subject>/<video>/<frame>.png and OUT/summary.csv.")
@click.option("--workers", type=int, default=1, show_default=True, help="Videos extracted in parallel (processes).")
@click.option("--start", type=int, default=0, show_default=True, help="First video (index into the sorted video list).")
@click.option("--end", type=int, help="Stop before this video index (default: all).")
@click.option("--keep-original", is_flag=True, help="Also write the raw box crops to OUT/original/<split>/....")
@click.option("--margin", type=float, default=0.25, show_default=True,
              help="Context added around each .face box before re-detection, as a fraction of its longer side.")
@click.option("--min-face-size", type=int, default=40, show_default=True, help="MTCNN: smallest face in pixels.")
@click.option("--confidence", type=float, default=0.7, show_default=True,
              help="MTCNN: least final face score for a face to be kept.")
@click.option("--no-borrow-boxes", is_flag=True,
              help="Do not give frames without a usable .face box the previous frame's box.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@verbose_option
def extract(root, out, workers, start, end, keep_original, margin, min_face_size, confidence, no_borrow_boxes, as_json):
    """Cut 112x112 aligned faces out of Spoof-in-the-Wild videos.

    ROOT is laid out as ROOT/Train|Test/live|spoof/<subject>/<name>.mov with <name>.face beside each video
    (one `x1 y1 x2 y2` line per frame). Each frame is cropped at its box, MTCNN re-detects the face in the
    crop and it is aligned to the ArcFace template. Broken .face lines, all-zero boxes, short .face files,
    `*.m.mov` names and unreadable videos are counted in OUT/summary.csv, not fatal. Running again skips
    the videos already finished.

    \b
    Example:
      edgepad extract /data/SiW -o crops --workers 2
    """
    from edgepad.data.extract import ExtractOptions, extract_dataset

    options = ExtractOptions(root=root, out=out, workers=workers, start=start, end=end, keep_original=keep_original,
                             margin=margin, min_face_size=min_face_size, confidence=confidence,
                             borrow_boxes=not no_borrow_boxes)
    with _VideoProgress(quiet=as_json) as progress:
        result = extract_dataset(options, progress=progress.update)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        _print_extract_overview(result)


class _VideoProgress:
    """A rich progress bar over videos, on stderr."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None
        self.task = None

    def __enter__(self):
        if not self.quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("Extracting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                TextColumn("[dim]{task.description}"), console=Console(stderr=True))
            self.bar.__enter__()
        return self

    def update(self, done: int, total: int, video: str | None) -> None:
        if self.bar is None:
            return
        if self.task is None:
            self.task = self.bar.add_task("", total=total)
        self.bar.update(self.task, completed=done, description=video or "")

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False


def _print_extract_overview(result) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    totals = result.totals()
    console.print(f"[bold]{result.out}[/bold]: {len(result.videos)} videos ({result.processed} extracted now, "
                  f"{result.skipped} already done), {totals['frames']} frames, {totals['faces_aligned']} faces aligned, "
                  f"{totals['frames_lost']} frames lost ({_percent(totals['frames_lost'], totals['frames'])}), "
                  f"{result.disk_bytes / 1e6:.1f} MB on disk")
    if result.processed:
        console.print(f"{result.frames_per_second:.1f} frames/s over {result.seconds:.1f} s")
    defects = {k: totals[k] for k in ("bad_lines", "zero_boxes", "frames_without_line", "m_mov", "unreadable",
                                      "missing_face_file") if totals[k]}
    if defects:
        console.print("defects: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in defects.items()))
    worst = result.most_lost()
    if worst:
        table = Table(title="videos with the most lost frames", title_justify="left")
        for column in ("video", "split", "frames", "lost", "no box", "no face"):
            table.add_column(column)
        for v in worst:
            table.add_row(v.video, f"{v.split}/{v.label}", str(v.frames), str(v.frames_lost), str(v.no_box), str(v.no_face))
        console.print(table)
    console.print(f"per-video figures: {result.out / 'summary.csv'}")


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


@click.command()
@verbose_option
def train():
    """Train the seed's MobileNet live/spoof classifier on aligned crops."""


@click.command()
@verbose_option
def evaluate():
    """PAD metrics (ISO/IEC 30107-3) of a model on aligned crops."""
