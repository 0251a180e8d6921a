"""Folders of aligned crops as `edgepad extract` writes them: <label>/<subject>/<video>/<frame>.png."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgepad.errors import InputFileError
from edgepad.runtime.frames import is_image_file

from .siw import LABELS, attack_type_of

LABEL_INDEX = {"live": 0, "spoof": 1}  # the seed's: live = 0, spoof = 1


@dataclass(frozen=True)
class Crop:
    path: Path
    label: str  # live | spoof, from the folder
    subject: str
    video: str  # the video folder; the unit a presentation is

    @property
    def label_index(self) -> int:
        return LABEL_INDEX[self.label]

    @property
    def attack_type(self) -> str:
        return attack_type_of(self.video, self.label)


def resolve_split(folder: str | os.PathLike, preferred_split: str, option: str = "DATA") -> Path:
    """A folder holding live/ and spoof/: FOLDER itself, or FOLDER/<preferred_split> of an extract output."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"{option} {folder}: no such folder")
    if any((folder / label).is_dir() for label in LABELS):
        return folder
    if (folder / preferred_split).is_dir():
        return folder / preferred_split
    raise InputFileError(f"{option} {folder}: holds neither live/ and spoof/ nor {preferred_split}/; give an "
                         "`edgepad extract` output or one of its Train/ or Test/ folders")


def list_crops(split_dir: Path, option: str = "DATA") -> list[Crop]:
    crops = []
    for label in LABELS:
        base = split_dir / label
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if not is_image_file(path) or not path.is_file():
                continue
            parts = path.relative_to(base).parts
            subject = parts[0] if len(parts) > 1 else "-"
            video = parts[-2] if len(parts) > 2 else subject
            crops.append(Crop(path, label, subject, video))
    if not crops:
        raise InputFileError(f"{option} {split_dir}: no images under live/ or spoof/")
    return crops
