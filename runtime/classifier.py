"""Live/spoof scoring of aligned faces with the bundle's classifier, preprocessed exactly as its model card says."""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from .backends import BackendError, InferenceModel
from .face_model import AlignedFaceModel


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


def live_probability(scores: np.ndarray, head: Optional[str], live_index: int) -> np.ndarray:
    """P(live) per row of a classifier's output, as the card's head says: "softmax" (probabilities),
    "sigmoid" (one unit: the probability of the second label), "logits" (raw scores; one unit: a sigmoid's
    input). Cards without a head (older converts) keep the guess from the values."""
    scores = np.asarray(scores, np.float64)
    if head in ("sigmoid", "logits") and scores.shape[-1] == 1:
        second = scores[:, 0] if head == "sigmoid" else sigmoid(scores[:, 0])
        return second if live_index == 1 else 1.0 - second
    if head == "logits":
        return softmax(scores)[:, live_index]
    if head == "softmax":
        return scores[:, live_index]
    return as_probabilities(scores)[:, live_index]


def as_probabilities(scores: np.ndarray) -> np.ndarray:
    """A softmax head's output as it is; logits (negative values, or rows not summing to 1) through softmax."""
    scores = np.asarray(scores, np.float64)
    if scores.min() >= 0 and np.allclose(scores.sum(axis=-1), 1.0, atol=1e-3):
        return scores
    return softmax(scores)


class LiveClassifier(AlignedFaceModel):
    """Scores aligned BGR face crops: P(live) per face, and the decision against the spoof threshold.

    The card's `threshold` (or --threshold) is the spoof decision threshold: a face is spoof when
    P(spoof) = 1 - P(live) reaches it.
    """

    def __init__(self, model: InferenceModel, threshold: Optional[float] = None):
        card = model.card
        if card.task not in (None, "classifier"):
            raise BackendError(f"{model.model_dir}: the model card says task '{card.task}', not a "
                               "classifier; give a live/spoof classifier's convert output")
        self.live_index = card.live_class
        self.head = card.head
        if self.head not in (None, "softmax", "sigmoid", "logits"):
            raise BackendError(f"{model.model_dir}: the model card's head '{self.head}' is not softmax, sigmoid or "
                               "logits; convert the model again with this edgepad")
        self.threshold = float(threshold if threshold is not None else card.spoof_threshold)
        super().__init__(model)

    def live_probabilities(self, faces_bgr: List[np.ndarray]) -> np.ndarray:
        if not faces_bgr:
            return np.zeros(0)
        return live_probability(self.raw_outputs(faces_bgr), self.head, self.live_index)

    def is_live(self, live_probability: float) -> bool:
        return (1.0 - float(live_probability)) < self.threshold
