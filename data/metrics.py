"""PAD error rates per ISO/IEC 30107-3, from spoof scores (higher = more likely an attack).

A presentation is classified an attack when its score is >= the threshold.
- APCER of attack type k: the share of type-k attack presentations classified bona fide.
- BPCER: the share of bona fide presentations classified as attacks.
- APCER (reported): the worst attack type's, max_k APCER_k, as the standard asks ("the highest APCER of
  the PAI species"); the pooled APCER over all attacks is reported beside it for reference.
- ACER = (APCER_max + BPCER) / 2 (ISO/IEC 30107-3:2017; later editions deprecate it, it is still the figure
  SiW and OULU results are quoted with).
- The threshold is chosen on a development set at the equal error rate of pooled APCER and BPCER.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

BONA_FIDE = "live"


@dataclass(frozen=True)
class PadMetrics:
    threshold: float
    apcer_per_type: dict[str, float]
    apcer_max: float
    apcer_pooled: float
    bpcer: float
    acer: float
    counts: dict[str, int]  # presentations per type, bona fide included

    def to_json(self) -> dict:
        return {
            "threshold": self.threshold,
            "apcer": self.apcer_max,
            "apcer_definition": "max over attack types (ISO/IEC 30107-3)",
            "apcer_per_type": self.apcer_per_type,
            "apcer_pooled": self.apcer_pooled,
            "bpcer": self.bpcer,
            "acer": self.acer,
            "counts": self.counts,
        }


def pad_metrics(scores: Sequence[float], types: Sequence[str], threshold: float) -> PadMetrics:
    """Error rates at `threshold`; `types[i]` is 'live' for bona fide, else the attack type (print, replay...)."""
    scores = np.asarray(scores, dtype=np.float64)
    types = np.asarray(types)
    if scores.shape != types.shape:
        raise ValueError(f"{scores.size} scores for {types.size} labels")
    bona_fide = types == BONA_FIDE
    attack_types = sorted(set(types[~bona_fide].tolist()))
    if not bona_fide.any() or not attack_types:
        raise ValueError("PAD metrics need bona fide and attack presentations; the data has only "
                         + ("attacks" if not bona_fide.any() else "bona fide presentations"))
    said_attack = scores >= threshold
    apcer = {t: float(np.mean(~said_attack[types == t])) for t in attack_types}
    bpcer = float(np.mean(said_attack[bona_fide]))
    apcer_max = max(apcer.values())
    counts = {t: int(np.sum(types == t)) for t in [BONA_FIDE] + attack_types}
    return PadMetrics(float(threshold), apcer, apcer_max, float(np.mean(~said_attack[~bona_fide])), bpcer,
                      (apcer_max + bpcer) / 2, counts)


def error_curve(scores: Sequence[float], is_attack: Sequence[bool]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, APCER, BPCER) at every distinct decision: each score, and one above the largest."""
    scores = np.asarray(scores, dtype=np.float64)
    is_attack = np.asarray(is_attack, dtype=bool)
    distinct = np.unique(scores)
    thresholds = np.append(distinct, np.nextafter(distinct[-1], np.inf))
    attack_scores = np.sort(scores[is_attack])
    bona_scores = np.sort(scores[~is_attack])
    # attacks below t pass as bona fide; bona fide at or above t are rejected
    apcer = np.searchsorted(attack_scores, thresholds, side="left") / max(len(attack_scores), 1)
    bpcer = 1.0 - np.searchsorted(bona_scores, thresholds, side="left") / max(len(bona_scores), 1)
    return thresholds, apcer, bpcer


def eer_threshold(scores: Sequence[float], types: Sequence[str]) -> tuple[float, float]:
    """(threshold, EER): the threshold where pooled APCER and BPCER are closest; the EER is their mean there.

    Of equally close thresholds the lowest error wins, then the smallest threshold.
    """
    is_attack = np.asarray(types) != BONA_FIDE
    if is_attack.all() or not is_attack.any():
        raise ValueError("the development set needs bona fide and attack presentations to fix an EER threshold")
    thresholds, apcer, bpcer = error_curve(scores, is_attack)
    gap = np.abs(apcer - bpcer)
    mean = (apcer + bpcer) / 2
    best = np.lexsort((thresholds, mean, gap))[0]
    return float(thresholds[best]), float(mean[best])
