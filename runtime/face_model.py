"""What the live/spoof classifier and the embedding model share: one model run on aligned face crops, each
preprocessed exactly as the model card says."""
from __future__ import annotations

from typing import List

import numpy as np

from .backends import InferenceModel
from .preprocess import normalize


class AlignedFaceModel:
    def __init__(self, model: InferenceModel):
        self.model = model
        self.height, self.width = model.input_hw
        self.preprocess = model.card.preprocess
        self.output_name = model.output_names[0]

    @property
    def align_size(self) -> int:
        return self.height

    def raw_outputs(self, faces_bgr: List[np.ndarray]) -> np.ndarray:
        """The model's first output, one row per aligned BGR face: (N, values)."""
        batch = np.stack([normalize(face, self.preprocess, self.height, self.width) for face in faces_bgr])
        return self.model.run(batch)[self.output_name].reshape(len(faces_bgr), -1)
