"""What an extraction writes and reads back: its options, a video's summary row, the done marker, OUT's layout.

Shared by the extraction driver (extract.py) and the per-video worker (extract_video.py).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .faces import ALIGNED_SIZE, DEFAULT_MIN_FACE_SIZE, DEFAULT_THRESHOLDS
from .siw import SiwVideo

DONE_MARKER = ".done.json"
ORIGINALS = "original"  # OUT/original/<split>/...: raw crops with --keep-original, outside the training tree


@dataclass
class ExtractOptions:
    root: Path
    out: Path
    workers: int = 1
    start: int = 0
    end: int | None = None
    keep_original: bool = False
    margin: float = 0.25  # of the box's longer side, on every side: MTCNN needs some context around the face
    min_face_size: int = DEFAULT_MIN_FACE_SIZE
    confidence: float = DEFAULT_THRESHOLDS[2]  # the final (ONet) face score a face needs
    borrow_boxes: bool = True  # a frame without a usable box takes the last good one; MTCNN still has to find the face
    size: int = ALIGNED_SIZE


@dataclass
class VideoSummary:
    split: str
    label: str
    subject: str
    video: str
    attack_type: str
    frames: int = 0
    boxes: int = 0  # frames with a usable box in the .face file
    faces_aligned: int = 0
    frames_lost: int = 0
    no_face: int = 0  # a box, but MTCNN found no face in the crop
    no_box: int = 0  # no usable box at all (not even a borrowed one)
    borrowed_boxes: int = 0
    bad_lines: int = 0
    zero_boxes: int = 0
    frames_without_line: int = 0
    extra_lines: int = 0
    m_mov: int = 0
    unreadable: int = 0
    missing_face_file: int = 0

    DEFECTS = ("bad_lines", "zero_boxes", "frames_without_line", "extra_lines", "m_mov", "unreadable",
               "missing_face_file")

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def write_marker(video_dir: Path, summary: VideoSummary) -> None:
    partial = video_dir / f"{DONE_MARKER}.partial"
    partial.write_text(json.dumps(asdict(summary)) + "\n")
    os.replace(partial, video_dir / DONE_MARKER)


def read_marker(path: Path) -> VideoSummary | None:
    if not path.is_file():
        return None
    try:
        return VideoSummary(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None  # a marker from another edgepad version: the video counts as not done


def clear_partial(out: Path, video: SiwVideo) -> None:
    """Remove what an interrupted run left of a video (no done marker), crops and raw crops alike."""
    for folder in (out / video.key, out / ORIGINALS / video.key):
        if folder.exists():
            shutil.rmtree(folder)
