"""Face verification figures from the distances of same/different pairs (lower distance = more alike).

A pair is accepted as "same person" when its distance is strictly below the threshold (as insightface's
`calculate_accuracy`). A pair whose distance is missing (no face found in one of its images) is never dropped:
- in accuracy (best threshold and k-fold) it is a wrong decision at every threshold;
- in TAR, FAR and AUC it is a rejected pair, as ISO/IEC 19795-1's generalised rates count a failure to acquire:
  a same pair without a face lowers TAR, a different pair without one is not a false accept.

- Thresholds tried: the midpoints between consecutive distinct distances, plus one below and one above them all
  (exact, so the best threshold is the best any threshold can do; insightface scans a fixed 0.01 grid instead).
  Of equally accurate thresholds the smallest wins (insightface's `np.argmax`).
- k-fold accuracy (insightface's `calculate_roc`): the pairs are cut into k contiguous folds in file order
  (sklearn's `KFold(shuffle=False)`); each fold is judged at the best threshold of the other k-1 folds; the
  figure is the mean of the k fold accuracies.
- TAR at FAR f: the largest threshold at which at most floor(f * negatives) different pairs are accepted, and
  the share of same pairs accepted there.
- AUC: the probability that a random same pair is closer than a random different pair (ties count half).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

FAR_TARGETS = (1e-3, 1e-2)


def effective_distances(distances: Sequence[float | None], same: Sequence[bool],
                        missing_as: str = "error") -> tuple[np.ndarray, np.ndarray]:
    """(distances as floats, same as bools). A missing distance becomes, with missing_as "error", +inf for a
    same pair (always rejected) and -inf for a different pair (always accepted): wrong at every threshold;
    with "rejected", +inf for both (never accepted)."""
    same = np.asarray(same, dtype=bool)
    values = np.array([np.nan if d is None else float(d) for d in distances], dtype=np.float64)
    if values.shape != same.shape:
        raise ValueError(f"{values.size} distances for {same.size} pairs")
    missing = np.isnan(values)
    values[missing & same] = np.inf
    values[missing & ~same] = -np.inf if missing_as == "error" else np.inf
    return values, same


def accuracy_at(values: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Share of pairs decided right at `threshold` (same when distance < threshold)."""
    return float(np.mean((values < threshold) == same)) if len(same) else 0.0


def candidate_thresholds(values: np.ndarray) -> np.ndarray:
    finite = np.unique(values[np.isfinite(values)])
    if finite.size == 0:
        return np.array([0.0])
    middles = (finite[:-1] + finite[1:]) / 2
    below, above = finite[0] - max(1e-6, abs(finite[0]) * 1e-6), finite[-1] + max(1e-6, abs(finite[-1]) * 1e-6)
    return np.concatenate([[below], middles, [above]])


def best_threshold(values: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) of the most accurate threshold on these pairs; the smallest of equals."""
    thresholds = candidate_thresholds(values)
    accuracies = np.array([accuracy_at(values, same, t) for t in thresholds])
    best = int(np.argmax(accuracies))
    return float(thresholds[best]), float(accuracies[best])


def tar_at_far(values: np.ndarray, same: np.ndarray, far: float) -> dict:
    negatives = np.sort(values[~same])
    allowed = int(np.floor(far * len(negatives) + 1e-9))
    threshold = float(negatives[allowed]) if allowed < len(negatives) else np.inf
    return {"far_target": far, "threshold": threshold if np.isfinite(threshold) else None,
            "tar": float(np.mean(values[same] < threshold)) if same.any() else 0.0,
            "far": float(np.mean(negatives < threshold)) if len(negatives) else 0.0,
            "false_accepts_allowed": allowed}


def auc(values: np.ndarray, same: np.ndarray) -> float:
    positives, negatives = values[same], np.sort(values[~same])
    if not len(positives) or not len(negatives):
        return float("nan")
    right = np.searchsorted(negatives, positives, side="right")
    left = np.searchsorted(negatives, positives, side="left")
    wins = (len(negatives) - right) + 0.5 * (right - left)
    return float(wins.sum() / (len(positives) * len(negatives)))


def fold_ranges(count: int, folds: int) -> list[tuple[int, int]]:
    """[start, end) of each contiguous fold, the first count % folds folds one pair longer (sklearn's KFold)."""
    sizes = [count // folds + (1 if i < count % folds else 0) for i in range(folds)]
    starts = np.cumsum([0] + sizes)
    return [(int(starts[i]), int(starts[i + 1])) for i in range(folds)]


@dataclass(frozen=True)
class VerificationMetrics:
    threshold: float  # best single threshold over all pairs
    accuracy: float  # at that threshold
    kfold_accuracy: float
    kfold_std: float
    folds: list[dict]  # per fold: pairs [start, end), threshold (from the other folds), accuracy
    tar_at_far: list[dict]
    auc: float
    positive: dict  # mean/std/count of same-pair distances (found faces only)
    negative: dict
    failures: int  # pairs with no distance (face not found), counted as errors

    def to_json(self) -> dict:
        return {"threshold": self.threshold, "accuracy": self.accuracy,
                "kfold": {"accuracy": self.kfold_accuracy, "std": self.kfold_std, "folds": self.folds},
                "tar_at_far": self.tar_at_far, "auc": self.auc, "positive_distances": self.positive,
                "negative_distances": self.negative, "failures": self.failures}


def _stats(values: np.ndarray) -> dict:
    finite = values[np.isfinite(values)]
    return {"count": int(finite.size), "mean": float(finite.mean()) if finite.size else None,
            "std": float(finite.std()) if finite.size else None}


def verification_metrics(distances: Sequence[float | None], same: Sequence[bool],
                         folds: int = 10) -> VerificationMetrics:
    values, same = effective_distances(distances, same)
    if not same.any() or same.all():
        raise ValueError("verification needs same and different pairs; the pairs file has only "
                         + ("different" if not same.any() else "same") + " pairs")
    if folds < 2 or folds > len(same):
        raise ValueError(f"--folds {folds}: give 2 to {len(same)} (the number of pairs)")
    threshold, accuracy = best_threshold(values, same)
    per_fold = []
    for start, end in fold_ranges(len(same), folds):
        train = np.ones(len(same), bool)
        train[start:end] = False
        fold_threshold, _ = best_threshold(values[train], same[train])
        per_fold.append({"pairs": [start, end], "threshold": fold_threshold,
                         "accuracy": accuracy_at(values[start:end], same[start:end], fold_threshold)})
    fold_accuracies = np.array([f["accuracy"] for f in per_fold])
    rejected, _ = effective_distances(distances, same, missing_as="rejected")
    return VerificationMetrics(threshold, accuracy, float(fold_accuracies.mean()), float(fold_accuracies.std()),
                               per_fold, [tar_at_far(rejected, same, far) for far in FAR_TARGETS], auc(rejected, same),
                               _stats(values[same]), _stats(values[~same]),
                               int(sum(d is None for d in distances)))


def roc_curve(distances: Sequence[float | None], same: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) at every candidate threshold, for the ROC plot."""
    values, same = effective_distances(distances, same, missing_as="rejected")
    thresholds = candidate_thresholds(values)
    far = np.array([np.mean(values[~same] < t) for t in thresholds])
    tar = np.array([np.mean(values[same] < t) for t in thresholds])
    return far, tar
