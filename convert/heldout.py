"""Calibration and held-out evaluation images for the quantized targets (vim3, tflite), and decisions kept.

A quantized model is judged as a PAD user judges it: on faces it was not calibrated with, by whether each face's
decision (live/spoof at the card's threshold; top-1 for other classifiers) is the float model's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepad.errors import InputFileError, UsageError
from edgepad.runtime.card import ModelCard

HELD_OUT_EVERY = 5  # without --eval-images, every 5th calibration image (or sub-folder) is held out for evaluation
DEFAULT_MIN_AGREEMENT = 0.99


@dataclass
class QuantizationImages:
    """Normalised (H, W, C) inputs and their files: one set calibrates, the other, disjoint, judges."""

    calibration: list[np.ndarray] = field(default_factory=list)
    calibration_sources: list[str] = field(default_factory=list)
    evaluation: list[np.ndarray] = field(default_factory=list)
    evaluation_sources: list[str] = field(default_factory=list)


def spread_over_folders(files: list[Path], count: int) -> list[Path]:
    """Up to `count` files taken in turn from each sub-folder, so an extract's crops (one folder per video) calibrate
    with many videos rather than the first video's frames only."""
    groups: dict[Path, list[Path]] = {}
    for path in files:
        groups.setdefault(path.parent, []).append(path)
    chosen: list[Path] = []
    queues = [list(group) for group in groups.values()]
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return chosen


def split_held_out(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(calibration, evaluation) from one folder's files. With several sub-folders (one per video), whole sub-folders
    are held out, so no evaluation face is a near copy of a calibration frame; else every HELD_OUT_EVERY-th file."""
    folders = sorted({path.parent for path in files})
    if len(folders) >= 2:
        held = {folder for i, folder in enumerate(folders) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1} or {folders[-1]}
        return [p for p in files if p.parent not in held], [p for p in files if p.parent in held]
    if len(files) < 2:
        return files, []
    evaluation = [p for i, p in enumerate(files) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1] or [files[-1]]
    return [p for p in files if p not in evaluation], evaluation


def quantization_images(calibration_dir, eval_dir, card: ModelCard, count: int, required: bool,
                        target: str) -> QuantizationImages:
    """Read --calibration and --eval-images (default: a held-out share of --calibration) as the card says."""
    from .parity_inputs import image_files, normalize_for_card, read_image

    if calibration_dir is None:
        if required:
            raise InputFileError(f"--calibration: the {target} target quantizes with real images and none were given; "
                                 "pass --calibration DIR (jpg/png like the model's inputs)")
        return QuantizationImages()
    if count < 1:
        raise UsageError(f"--calibration-count {count}: must be at least 1")
    files = image_files(calibration_dir, "--calibration")
    if eval_dir is None:
        files, evaluation_files = split_held_out(files)
    else:
        evaluation_files = image_files(eval_dir, "--eval-images")
        overlap = {p.resolve() for p in files} & {p.resolve() for p in evaluation_files}
        if overlap:
            raise UsageError(f"--eval-images {eval_dir}: {len(overlap)} image(s) are also calibration images (e.g. "
                             f"{sorted(overlap)[0]}); give a folder of faces the model is not calibrated with")
    chosen = spread_over_folders(files, count)

    def load(paths, option):
        return [normalize_for_card(read_image(p, option), card) for p in paths]

    return QuantizationImages(load(chosen, "--calibration"), [str(p) for p in chosen],
                              load(evaluation_files, "--eval-images"), [str(p) for p in evaluation_files])


def decisions(outputs: np.ndarray, card: ModelCard) -> np.ndarray:
    """Per input: True for spoof on a PAD card (P(spoof) reaches the card's threshold), else the top-1 class."""
    from edgepad.runtime.classifier import live_probability

    scores = np.asarray(outputs, np.float64).reshape(len(outputs), -1)
    labels = card.labels or []
    if card.task == "classifier" and scores.shape[1] == 2 and set(labels) == {"live", "spoof"}:
        live = live_probability(scores, card.head, card.live_class)
        return (1.0 - live) >= card.spoof_threshold
    return scores.argmax(axis=1)


@dataclass
class DecisionAgreement:
    share: float | None  # None when the model makes no decision (an embedding)
    flipped: list[str]  # the evaluation inputs whose decision changed

    def to_json(self) -> dict:
        return {"decision_agreement": self.share, "flipped": self.flipped}


def decision_agreement(reference: np.ndarray, candidate: np.ndarray, card: ModelCard | None,
                       sources: list[str]) -> DecisionAgreement:
    if card is None or card.task != "classifier" or not len(reference):
        return DecisionAgreement(None, [])
    same = decisions(reference, card) == decisions(candidate, card)
    return DecisionAgreement(float(np.mean(same)), [s for s, kept in zip(sources, same, strict=True) if not kept])
