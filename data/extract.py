"""`edgepad extract`: SiW videos -> 112x112 aligned face crops, one PNG per frame, resumable and parallel.

Each frame is cut at its `.face` box (with a margin), MTCNN re-detects the face inside that crop, and the
face is aligned to the ArcFace template by the runtime's own aligner. A video is finished when its done
marker exists; the marker is written last, so an interrupted video is redone and a finished one is kept.
"""
from __future__ import annotations

import csv
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgepad.errors import InputFileError, UsageError

from .extract_records import DONE_MARKER, ExtractOptions, VideoSummary, read_marker
from .siw import SiwVideo, find_videos

SUMMARY_CSV = "summary.csv"


@dataclass
class ExtractResult:
    out: Path
    videos: list[VideoSummary]  # every finished video of the dataset, this run's and earlier runs'
    processed: int
    skipped: int
    seconds: float
    frames_processed: int
    disk_bytes: int
    warnings: list[str] = field(default_factory=list)

    @property
    def frames_per_second(self) -> float:
        return self.frames_processed / self.seconds if self.seconds > 0 else 0.0

    def totals(self) -> dict[str, int]:
        keys = [c for c in VideoSummary.columns() if c not in ("split", "label", "subject", "video", "attack_type")]
        return {k: sum(getattr(v, k) for v in self.videos) for k in keys}

    def most_lost(self, count: int = 5) -> list[VideoSummary]:
        ranked = sorted(self.videos, key=lambda v: (-v.frames_lost, v.video))
        return [v for v in ranked if v.frames_lost > 0][:count]

    def to_json(self) -> dict:
        return {
            "out": str(self.out),
            "videos": len(self.videos),
            "processed": self.processed,
            "skipped": self.skipped,
            "totals": self.totals(),
            "most_lost": [{"video": v.video, "split": v.split, "frames": v.frames, "frames_lost": v.frames_lost}
                          for v in self.most_lost()],
            "disk_bytes": self.disk_bytes,
            "seconds": round(self.seconds, 3),
            "frames_per_second": round(self.frames_per_second, 2),
            "summary_csv": str(self.out / SUMMARY_CSV),
            "warnings": self.warnings,
        }


def extract_dataset(options: ExtractOptions, progress=None) -> ExtractResult:
    """The Python API behind `edgepad extract`. `progress(done, total, video_key)` is called per video."""
    _check_options(options)
    videos = find_videos(options.root)
    if not videos:
        raise InputFileError(f"{options.root}: no videos under Train|Test/live|spoof/<subject>/ (.mov, .mp4, .avi)")
    selected = videos[options.start:options.end]
    range_text = f"--start {options.start}" + (f" --end {options.end}" if options.end is not None else "")
    warnings = [] if selected else [f"{range_text}: no video in that range (the dataset has {len(videos)})"]
    options.out.mkdir(parents=True, exist_ok=True)
    todo = [v for v in selected if not (options.out / v.key / DONE_MARKER).is_file()]
    skipped = len(selected) - len(todo)
    started = time.perf_counter()
    frames = 0
    if progress:
        progress(skipped, len(selected), None)
    for done, summary in enumerate(_run(todo, options), start=1):
        frames += summary.frames
        if progress:
            progress(skipped + done, len(selected),
                     f"{summary.split}/{summary.label}/{summary.subject}/{summary.video}")
    seconds = time.perf_counter() - started
    summaries = [s for s in (read_marker(options.out / v.key / DONE_MARKER) for v in videos) if s is not None]
    write_summary_csv(options.out / SUMMARY_CSV, summaries)
    return ExtractResult(options.out, summaries, len(todo), skipped, seconds, frames, _disk_bytes(options.out),
                         warnings)


def _check_options(options: ExtractOptions) -> None:
    if options.workers < 1:
        raise UsageError(f"--workers {options.workers}: give 1 or more")
    if options.start < 0 or (options.end is not None and options.end < options.start):
        raise UsageError(f"--start {options.start} --end {options.end}: need 0 <= start <= end")
    if not 0.0 <= options.confidence <= 1.0:
        raise UsageError(f"--confidence {options.confidence}: give a face score between 0 and 1")
    if options.margin < 0:
        raise UsageError(f"--margin {options.margin}: give a fraction of the box size, 0 or more")
    if options.min_face_size < 12:
        raise UsageError(f"--min-face-size {options.min_face_size}: MTCNN cannot find faces under 12 px")
    if options.out.exists() and not options.out.is_dir():
        raise UsageError(f"-o {options.out}: exists and is not a folder")


def _run(videos: list[SiwVideo], options: ExtractOptions):
    if not videos:
        return
    from .faces import prepare_detector_models

    models_root = prepare_detector_models()  # here, once: workers building the cache together would race
    if options.workers == 1 or len(videos) == 1:
        from .extract_video import VideoExtractor

        extractor = VideoExtractor(options, models_root)
        for video in videos:
            yield extractor.extract(video)
        return
    # spawn, not fork: a forked TensorFlow or onnxruntime can hang in the child.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from . import extract_video

    context = multiprocessing.get_context("spawn")
    workers = min(options.workers, len(videos))
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=extract_video.init_worker,
                               initargs=(options, models_root))
    try:
        futures = [pool.submit(extract_video.extract_in_worker, video) for video in videos]
        for future in as_completed(futures):
            yield future.result()
    except BaseException:
        # Ctrl-C or a failed video: stop now; unfinished videos have no done marker and are redone next run.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def write_summary_csv(path: Path, summaries: list[VideoSummary]) -> None:
    """Written beside and renamed into place, so parallel shards (--start/--end) never leave a torn file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    with open(partial, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=VideoSummary.columns())
        writer.writeheader()
        for summary in sorted(summaries, key=lambda s: (s.split, s.label, s.subject, s.video)):
            writer.writerow(asdict(summary))
    os.replace(partial, path)


def _disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
