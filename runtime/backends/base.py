"""What every backend shares: the model card, and the interface the detector and classifier call."""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Set

import numpy as np

from ..card import CardError, ModelCard


class BackendError(Exception):
    """A model folder or backend that cannot run: the message names the file or option and the fix."""


class MissingTargetError(BackendError):
    """The model folder has no files for this backend (e.g. no NPU binary): another backend can still run it."""


def read_card(model_dir: str | os.PathLike) -> ModelCard:
    path = os.path.join(str(model_dir), "edgepad.json")
    if not os.path.isfile(path):
        raise BackendError(f"{model_dir}: no edgepad.json; expected an `edgepad convert` output folder")
    try:
        return ModelCard.load(path)
    except CardError as error:
        raise BackendError(str(error)) from None


class InferenceModel:
    """A converted model on one backend.

    `run(batch)` takes normalised float32 NHWC input (N, H, W, C), already preprocessed as the card says,
    and returns {output name: array (N, ...)} in the card's output order. Subclasses implement `_run_batch`;
    where their file has a fixed batch of 1 they get one row at a time.
    """

    name = "base"

    def __init__(self, model_dir: str, card: Optional[ModelCard] = None):
        self.model_dir = str(model_dir)
        self.card = card if card is not None else read_card(model_dir)
        self.output_names: List[str] = self.card.output_names
        self.batch_open = False  # True when one call takes any batch size

    @classmethod
    def available(cls) -> bool:
        return True

    @property
    def input_hw(self):
        return self.card.input.height, self.card.input.width

    def fixed_input_sizes(self) -> Optional[Set[str]]:
        """The input sizes ("HxW") this backend has a compiled model for, or None when it takes any size."""
        return None

    def run(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4:
            raise BackendError(f"{self.model_dir}: expected an (N, H, W, C) batch, got shape {batch.shape}")
        if self.batch_open or len(batch) == 1:
            return self._run_batch(batch)
        rows = [self._run_batch(batch[i:i + 1]) for i in range(len(batch))]
        return {name: np.concatenate([r[name] for r in rows]) for name in rows[0]}

    def _run_batch(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def _path(self, relative: str) -> str:
        path = os.path.join(self.model_dir, relative)
        if not os.path.isfile(path):
            raise BackendError(f"{path}: missing; the model card names it, copy the whole convert output folder")
        return path

    def describe(self) -> str:
        return f"{os.path.basename(self.model_dir.rstrip('/'))} on {self.name}"


def nhwc_to(batch: np.ndarray, layout: str) -> np.ndarray:
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2)) if layout == "nchw" else batch
