"""One frame through the runtime: detect faces, align each to the ArcFace template, score it live or spoof and/or
embed it (a recognition model), matched against a gallery of enrolled people when there is one."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from .align import align_face
from .classifier import LiveClassifier
from .detector import Face, MtcnnDetector
from .embedder import FaceEmbedder, Gallery

DEFAULT_ALIGN_SIZE = 112


@dataclass
class FrameResult:
    faces: List[Face]
    timings_ms: Dict[str, float] = field(default_factory=dict)
    frame: Optional[int] = None

    def to_json(self) -> dict:
        data = {"faces": [f.to_json() for f in self.faces],
                "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()}}
        if self.frame is not None:
            data = {"frame": self.frame, **data}
        return data


class FacePipeline:
    def __init__(self, detector: MtcnnDetector, classifier: Optional[LiveClassifier] = None,
                 embedder: Optional[FaceEmbedder] = None, gallery: Optional[Gallery] = None):
        self.detector = detector
        self.classifier = classifier
        self.embedder = embedder
        self.gallery = gallery

    def backend_names(self) -> Dict[str, str]:
        """Which backend runs each model: {"pnet": ..., "rnet": ..., "onet": ..., "classifier": ...}."""
        names = {"pnet": self.detector.pnet.name, "rnet": self.detector.rnet.name, "onet": self.detector.onet.name}
        if self.classifier is not None:
            names["classifier"] = self.classifier.model.name
        if self.embedder is not None:
            names["embedding"] = self.embedder.model.name
        return names

    @property
    def align_size(self) -> int:
        return self.classifier.align_size if self.classifier else DEFAULT_ALIGN_SIZE

    def aligned(self, image_bgr: np.ndarray, faces: List[Face], size: int) -> List[np.ndarray]:
        return [align_face(image_bgr, face.landmarks, size) for face in faces]

    def process(self, image_bgr: np.ndarray) -> FrameResult:
        start = time.perf_counter()
        faces = self.detector.detect(image_bgr)
        timings = {"detect": (time.perf_counter() - start) * 1e3}
        timings.update(self.score(image_bgr, faces))
        timings["total"] = (time.perf_counter() - start) * 1e3
        return FrameResult(faces, timings)

    def score(self, image_bgr: np.ndarray, faces: List[Face]) -> Dict[str, float]:
        """Fill face.live and face.is_live (when there is a classifier) and face.embedding (when there is an
        embedding model; with a gallery also nearest, distance, identity); returns the stages' times (ms)."""
        start = time.perf_counter()
        sizes = {m.align_size for m in (self.classifier, self.embedder) if m is not None} if faces else set()
        crops = {size: self.aligned(image_bgr, faces, size) for size in sizes}  # once per size both models share
        aligned = time.perf_counter()
        if self.classifier is not None and faces:
            for face, live in zip(faces, self.classifier.live_probabilities(crops[self.classifier.align_size])):
                face.live = float(live)
                face.is_live = self.classifier.is_live(live)
        timings = {"align": (aligned - start) * 1e3}
        if self.classifier is not None or self.embedder is None:
            timings["classify"] = (time.perf_counter() - aligned) * 1e3
        if self.embedder is not None:
            embed_start = time.perf_counter()
            if faces:
                embeddings = self.embedder.embed(crops[self.embedder.align_size])
                matches = self.gallery.nearest(embeddings) if self.gallery is not None else [(None, None)] * len(faces)
                for face, embedding, (name, distance) in zip(faces, embeddings, matches):
                    face.embedding = embedding
                    if name is not None:
                        face.nearest, face.distance = name, distance
                        face.identity = name if distance < self.gallery.threshold else None
            timings["embed"] = (time.perf_counter() - embed_start) * 1e3
        return timings
