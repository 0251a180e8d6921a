"""The Spoof-in-the-Wild layout: which videos there are, what their names say, and their per-frame face boxes.

`ROOT/Train|Test/live|spoof/<subject>/<subject>-<sensor>-<type>-<medium>-<session>.mov`, each with a `.face`
file beside it holding one `x1 y1 x2 y2` line per frame. Real copies of the dataset carry defects (lines with
a number missing, all-zero boxes, files shorter than their video, videos named `*.m.mov`); they are counted
here, never fatal.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgepad.errors import InputFileError

SPLITS = ("Train", "Test")
LABELS = ("live", "spoof")
# SiW's <type> field: 1 live, 2 print, 3 replay.
ATTACK_TYPES = {"1": "live", "2": "print", "3": "replay"}
VIDEO_SUFFIXES = (".mov", ".mp4", ".avi")


@dataclass(frozen=True)
class SiwVideo:
    path: Path
    face_file: Path | None
    split: str
    label: str  # live | spoof, from the folder
    subject: str
    name: str  # the video's name without `.mov` and without the stray `.m`
    m_mov: bool  # the file was named `*.m.mov`

    @property
    def key(self) -> str:
        """Relative output folder of this video's crops."""
        return f"{self.split}/{self.label}/{self.subject}/{self.name}"

    @property
    def attack_type(self) -> str:
        return attack_type_of(self.name, self.label)


def attack_type_of(video_name: str, label: str) -> str:
    """print / replay / live from a SiW name's third field; the folder's label when the name does not say."""
    fields = video_name.split("-")
    if len(fields) >= 3 and fields[2] in ATTACK_TYPES:
        return ATTACK_TYPES[fields[2]]
    return "live" if label == "live" else "spoof"


@dataclass
class FaceBoxes:
    """The boxes of one `.face` file, one entry per line (None where the line is unusable), and its defects."""

    boxes: list[tuple[int, int, int, int] | None] = field(default_factory=list)
    bad_lines: int = 0  # not four numbers (the seed found lines with a `48` missing)
    zero_boxes: int = 0  # 0 0 0 0: the annotator found no face
    missing_file: bool = False

    def box_for(self, frame: int) -> tuple[int, int, int, int] | None:
        return self.boxes[frame] if frame < len(self.boxes) else None


def find_videos(root: str | os.PathLike) -> list[SiwVideo]:
    """Every video under ROOT in the SiW layout, sorted by path (the order --start/--end count in)."""
    root = Path(root)
    if not root.is_dir():
        raise InputFileError(f"{root}: no such folder; give the SiW root holding Train/ and/or Test/")
    splits = [s for s in SPLITS if (root / s).is_dir()]
    if not splits:
        raise InputFileError(f"{root}: no Train/ or Test/ folder; give the SiW root "
                             "(ROOT/Train|Test/live|spoof/<subject>/*.mov)")
    videos: list[SiwVideo] = []
    for split in splits:
        for label in LABELS:
            for path in sorted((root / split / label).glob("*/*")):
                if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
                    videos.append(_video(path, split, label))
    names_seen: set[str] = set()
    unique: list[SiwVideo] = []
    for video in sorted(videos, key=lambda v: str(v.path)):
        if video.key in names_seen:  # both x.mov and x.m.mov: keep them apart
            video = SiwVideo(video.path, video.face_file, video.split, video.label, video.subject,
                             video.path.stem, video.m_mov)
        names_seen.add(video.key)
        unique.append(video)
    return unique


def _video(path: Path, split: str, label: str) -> SiwVideo:
    stem = path.stem
    m_mov = stem.endswith(".m")
    name = stem[:-2] if m_mov else stem
    candidates = [path.with_suffix(".face"), path.parent / f"{name}.face"]
    face_file = next((c for c in candidates if c.is_file()), None)
    return SiwVideo(path, face_file, split, label, path.parent.name, name, m_mov)


def read_face_file(path: Path | None) -> FaceBoxes:
    """Parse a `.face` file; unusable lines become None so frame numbers stay aligned with lines."""
    result = FaceBoxes()
    if path is None:
        result.missing_file = True
        return result
    for line in path.read_text(errors="replace").splitlines():
        numbers = line.replace(",", " ").split()
        try:
            values = [int(round(float(v))) for v in numbers]
        except ValueError:
            values = []
        if len(values) != 4:
            result.bad_lines += 1
            result.boxes.append(None)
            continue
        x1, y1, x2, y2 = values
        if x1 == y1 == x2 == y2 == 0:
            result.zero_boxes += 1
            result.boxes.append(None)
            continue
        if x2 <= x1 or y2 <= y1:
            result.bad_lines += 1
            result.boxes.append(None)
            continue
        result.boxes.append((x1, y1, x2, y2))
    return result
