"""Face embeddings (recognition models: MobileFaceNet/ArcFace-style nets cut at their embedding layer) and a
gallery of enrolled people to match them against.

Embeddings are L2-normalised here, whatever the model's last layer does, so distances live on the unit sphere:
Euclidean distance ||a - b|| in [0, 2], or cosine distance 1 - a.b in [0, 2] (the two rank pairs alike:
||a - b||^2 = 2 (1 - a.b)). Two faces are the same person when their distance is below the match threshold.
"""
from __future__ import annotations

import os
from typing import List, Optional, Tuple

import numpy as np

from .backends import BackendError, InferenceModel
from .card import ModelCard
from .face_model import AlignedFaceModel
from .frames import is_image_file

METRICS = ("euclidean", "cosine")


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (a zero row stays zero)."""
    vectors = np.asarray(vectors, np.float64)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def distances(a: np.ndarray, b: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """Pairwise distances between the rows of two sets of unit vectors: (len(a), len(b))."""
    if metric not in METRICS:
        raise ValueError(f"metric {metric}: choose euclidean or cosine")
    cosine = np.clip(np.asarray(a, np.float64) @ np.asarray(b, np.float64).T, -1.0, 1.0)
    if metric == "cosine":
        return 1.0 - cosine
    return np.sqrt(np.maximum(2.0 - 2.0 * cosine, 0.0))


def is_embedding_card(card: ModelCard) -> bool:
    return card.task == "embedding"


class FaceEmbedder(AlignedFaceModel):
    """Aligned BGR face crops -> L2-normalised embeddings, preprocessed as the model card says."""

    def __init__(self, model: InferenceModel, match_threshold: Optional[float] = None, metric: str = "euclidean"):
        card = model.card
        if not is_embedding_card(card):
            raise BackendError(f"{model.model_dir}: the model card says task '{card.task or 'classifier'}', "
                               "not an embedding model; give a recognition model's convert output (cut at its "
                               "embedding layer with --output-layer)")
        if metric not in METRICS:
            raise BackendError(f"--metric {metric}: choose euclidean or cosine")
        if match_threshold is None and card.match_threshold is not None:
            match_threshold = float(card.match_threshold)
        self.match_threshold = match_threshold
        self.metric = metric
        super().__init__(model)

    def embed(self, faces_bgr: List[np.ndarray]) -> np.ndarray:
        """(N, D) unit vectors, one per aligned face."""
        if not faces_bgr:
            return np.zeros((0, 0))
        return l2_normalize(self.raw_outputs(faces_bgr))


class Gallery:
    """Enrolled people: one sub-folder per person, each holding photos of that person (the largest face in
    each photo is enrolled). A face matches the person of its nearest enrolled embedding when that distance
    is below the threshold."""

    def __init__(self, names: List[str], embeddings: np.ndarray, files: List[str], threshold: float, metric: str):
        self.names, self.embeddings, self.files = names, embeddings, files
        self.threshold, self.metric = float(threshold), metric

    @classmethod
    def enrol(cls, folder: str, detector, embedder: FaceEmbedder, read_image, align_face) -> "Gallery":
        if embedder.match_threshold is None:
            raise BackendError(f"--gallery {folder}: the model card has no match_threshold; give --match-threshold "
                               "(e.g. the threshold `edgepad evaluate --pairs` reports)")
        if not os.path.isdir(folder):
            raise BackendError(f"--gallery {folder}: no such folder; give a folder with one sub-folder per person")
        names, crops, files = [], [], []
        for person in sorted(os.listdir(folder)):
            person_dir = os.path.join(folder, person)
            if not os.path.isdir(person_dir):
                continue
            photos = sorted(f for f in os.listdir(person_dir) if is_image_file(f))
            if not photos:
                raise BackendError(f"--gallery {person_dir}: no photos; add images of {person} or remove the folder")
            for photo in photos:
                path = os.path.join(person_dir, photo)
                image = read_image(path)
                faces = detector.detect(image)
                if not faces:
                    raise BackendError(f"--gallery {path}: no face found; replace the photo or remove it")
                largest = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
                crops.append(align_face(image, largest.landmarks, embedder.align_size))
                names.append(person)
                files.append(path)
        if not names:
            raise BackendError(f"--gallery {folder}: no sub-folders; make one folder of photos per person")
        return cls(names, embedder.embed(crops), files, embedder.match_threshold, embedder.metric)

    def nearest(self, embeddings: np.ndarray) -> List[Tuple[str, float]]:
        """(name, distance) of each embedding's nearest enrolled face."""
        if len(embeddings) == 0:
            return []
        table = distances(embeddings, self.embeddings, self.metric)
        best = table.argmin(axis=1)
        return [(self.names[j], float(table[i, j])) for i, j in enumerate(best)]
