"""One frame through the runtime: detect faces, align each to the ArcFace template, score it live or spoof."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from .align import align_face
from .classifier import LiveClassifier
from .detector import Face, MtcnnDetector

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
    def __init__(self, detector: MtcnnDetector, classifier: Optional[LiveClassifier] = None):
        self.detector = detector
        self.classifier = classifier

    def backend_names(self) -> Dict[str, str]:
        """Which backend runs each model: {"pnet": ..., "rnet": ..., "onet": ..., "classifier": ...}."""
        names = {"pnet": self.detector.pnet.name, "rnet": self.detector.rnet.name, "onet": self.detector.onet.name}
        if self.classifier is not None:
            names["classifier"] = self.classifier.model.name
        return names

    @property
    def align_size(self) -> int:
        return self.classifier.align_size if self.classifier else DEFAULT_ALIGN_SIZE

    def process(self, image_bgr: np.ndarray) -> FrameResult:
        start = time.perf_counter()
        faces = self.detector.detect(image_bgr)
        timings = {"detect": (time.perf_counter() - start) * 1e3}
        timings.update(self.score(image_bgr, faces))
        timings["total"] = (time.perf_counter() - start) * 1e3
        return FrameResult(faces, timings)

    def score(self, image_bgr: np.ndarray, faces: List[Face]) -> Dict[str, float]:
        """Fill face.live and face.is_live (when there is a classifier); returns align and classify times (ms)."""
        start = time.perf_counter()
        crops = [align_face(image_bgr, face.landmarks, self.align_size) for face in faces] if self.classifier else []
        aligned = time.perf_counter()
        if self.classifier is not None and crops:
            for face, live in zip(faces, self.classifier.live_probabilities(crops)):
                face.live = float(live)
                face.is_live = self.classifier.is_live(live)
        return {"align": (aligned - start) * 1e3, "classify": (time.perf_counter() - aligned) * 1e3}
