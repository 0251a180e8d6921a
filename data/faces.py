"""The two things extraction needs from a face library: find faces with five landmarks, and align one to 112x112.

Both are the board runtime's own (runtime/detector.py with the MTCNN nets edgepad converts into its cache,
runtime/align.py), so crops made here for training and calibration are cut exactly as the board cuts them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

# The seed's MTCNN settings: thresholds 0.6 / 0.7 / 0.7, faces of at least 40 px.
DEFAULT_THRESHOLDS = (0.6, 0.7, 0.7)
DEFAULT_MIN_FACE_SIZE = 40
ALIGNED_SIZE = 112


@dataclass(frozen=True)
class DetectedFace:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the image's pixels
    score: float
    landmarks: np.ndarray  # (5, 2): left eye (image's left), right eye, nose, left mouth corner, right mouth corner

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


class FaceDetector(Protocol):
    def detect(self, image_bgr: np.ndarray) -> list[DetectedFace]: ...


@dataclass(frozen=True)
class DetectorSettings:
    min_face_size: int = DEFAULT_MIN_FACE_SIZE
    thresholds: tuple[float, float, float] = DEFAULT_THRESHOLDS


def prepare_detector_models() -> str:
    """The MTCNN nets as `edgepad convert` outputs, built into the cache on first use (once, before any worker)."""
    from edgepad.convert.mtcnn_models import detector_models

    return str(detector_models())


def make_detector(settings: DetectorSettings, models_root: str | None = None, threads: int = 0) -> FaceDetector:
    """The runtime's MTCNN on onnxruntime; `threads` caps each net's threads (0: onnxruntime's choice)."""
    import os

    from edgepad.runtime.backends import load_model
    from edgepad.runtime.detector import DetectorSettings as RuntimeSettings
    from edgepad.runtime.detector import MtcnnDetector

    root = models_root or prepare_detector_models()
    nets = [load_model(os.path.join(root, net), "onnxruntime", threads=threads) for net in ("pnet", "rnet", "onet")]
    runtime_settings = RuntimeSettings(min_face_size=float(settings.min_face_size),
                                       thresholds=tuple(settings.thresholds))
    return RuntimeDetector(MtcnnDetector(*nets, settings=runtime_settings))


class RuntimeDetector:
    def __init__(self, detector):
        self._detector = detector

    def detect(self, image_bgr: np.ndarray) -> list[DetectedFace]:
        return [DetectedFace(tuple(float(v) for v in face.box[:4]), float(face.score),
                             np.asarray(face.landmarks, np.float32).reshape(5, 2))
                for face in self._detector.detect(image_bgr)]


def align_face(image_bgr: np.ndarray, landmarks: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """The face warped onto the ArcFace five-point template at size x size, by the runtime's aligner."""
    from edgepad.runtime.align import align_face as runtime_align_face

    return runtime_align_face(image_bgr, np.asarray(landmarks, np.float32), size)


def largest_face(faces: Sequence[DetectedFace], min_score: float = 0.0) -> DetectedFace | None:
    """The face the crop was cut around: the largest confident one."""
    candidates = [f for f in faces if f.score >= min_score]
    return max(candidates, key=lambda f: f.area) if candidates else None
