"""Verification pairs: LFW's layout with its pairs.txt, and insightface's `.bin` sets (lfw, cfp_fp, agedb_30).

- LFW: DATASET/<name>/<name>_<NNNN>.jpg; pairs.txt has a header line (e.g. `10 300`: folds and pairs per half
  fold), then `name i j` for a same pair and `name1 i name2 j` for a different pair, whitespace-separated.
- `.bin`: a pickle of (list of encoded images, list of bools); images 2k and 2k+1 are pair k, same when the
  k-th bool is true. The images are insightface's aligned 112x112 crops.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgepad.errors import InputFileError, UsageError


@dataclass(frozen=True)
class Pair:
    a: str  # an image key: a path, or `<file>.bin#<index>`
    b: str
    same: bool

    def to_json(self) -> dict:
        return {"a": self.a, "b": self.b, "same": self.same}


@dataclass
class PairSet:
    pairs: list[Pair]
    load: Callable[[str], np.ndarray | None]  # image key -> BGR image (None: unreadable)
    source: str
    aligned: bool  # the images are aligned crops already (.bin)

    def keys(self) -> list[str]:
        """Every image once, in first-use order."""
        seen: dict[str, None] = {}
        for pair in self.pairs:
            seen.setdefault(pair.a)
            seen.setdefault(pair.b)
        return list(seen)


def read_lfw_pairs(dataset: Path, pairs_file: Path, extension: str = ".jpg") -> PairSet:
    dataset, pairs_file = Path(dataset), Path(pairs_file)
    if not pairs_file.is_file():
        raise InputFileError(f"--pairs {pairs_file}: no such file")
    if not dataset.is_dir():
        raise InputFileError(f"DATASET {dataset}: no such folder (LFW layout: <name>/<name>_<NNNN>.jpg)")
    lines = pairs_file.read_text().splitlines()
    pairs = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) == 3:
                a, b = (fields[0], int(fields[1])), (fields[0], int(fields[2]))
            elif len(fields) == 4:
                a, b = (fields[0], int(fields[1])), (fields[2], int(fields[3]))
            else:
                raise ValueError
        except ValueError:
            raise InputFileError(f"{pairs_file}:{number}: '{line.strip()}' is not `name i j` (same person) or "
                                 "`name1 i name2 j` (different people)") from None
        paths = [dataset / name / f"{name}_{index:04d}{extension}" for name, index in (a, b)]
        for path in paths:
            if not path.is_file():
                raise InputFileError(f"{pairs_file}:{number}: {path} does not exist; DATASET must be in LFW's layout "
                                     "(<name>/<name>_<NNNN>.jpg) and hold every image pairs.txt names")
        pairs.append(Pair(str(paths[0]), str(paths[1]), len(fields) == 3))
    if not pairs:
        raise InputFileError(f"--pairs {pairs_file}: no pairs after the header line")
    return PairSet(pairs, _read_file, str(pairs_file), aligned=False)


def _read_file(key: str) -> np.ndarray | None:
    import cv2

    return cv2.imread(key, cv2.IMREAD_COLOR)


def read_bin(path: Path) -> PairSet:
    """insightface's verification `.bin`: pairs are consecutive images."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"DATASET {path}: no such file")
    try:
        with open(path, "rb") as f:
            images, same = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise InputFileError(f"DATASET {path}: not an insightface .bin (a pickle of (images, same list)): "
                             f"{error}") from None
    images, same = list(images), [bool(s) for s in same]
    if len(images) != 2 * len(same):
        raise InputFileError(f"DATASET {path}: {len(images)} images for {len(same)} pairs; a .bin holds two "
                             "images per pair")

    def load(key: str) -> np.ndarray | None:
        data = images[int(key.rsplit("#", 1)[1])]
        return cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_COLOR)

    pairs = [Pair(f"{path.name}#{2 * k}", f"{path.name}#{2 * k + 1}", s) for k, s in enumerate(same)]
    return PairSet(pairs, load, str(path), aligned=True)


def read_pairs(dataset: Path, pairs_file: Path | None) -> PairSet:
    dataset = Path(dataset)
    if dataset.suffix.lower() == ".bin":
        if pairs_file is not None:
            raise UsageError(f"--pairs {pairs_file}: a .bin set ({dataset}) carries its own pairs; drop --pairs")
        return read_bin(dataset)
    if pairs_file is None:
        raise UsageError(f"DATASET {dataset}: face verification needs --pairs pairs.txt (LFW layout), or an "
                         "insightface .bin set as DATASET")
    return read_lfw_pairs(dataset, pairs_file)
