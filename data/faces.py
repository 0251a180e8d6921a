"""The two things extraction needs from a face library: find faces with five landmarks, and align one to 112x112.

They are the board runtime's own detector and aligner (runtime/), so crops made here for training and
calibration are cut exactly as the board cuts them. Until the runtime's MTCNN is importable, the reference
`mtcnn` package stands in for detection (it is the same network and weights, only slower, and it ignores
min_face_size, so it is called with its default of 20).
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


def make_detector(settings: DetectorSettings) -> FaceDetector:
    """The runtime's MTCNN when it is there; the reference package otherwise."""
    runtime_detector = _runtime_detector(settings)
    if runtime_detector is not None:
        return runtime_detector
    return ReferenceMtcnnDetector(settings)


def align_face(image_bgr: np.ndarray, landmarks: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """The face warped onto the ArcFace five-point template at size x size, as the runtime aligns it."""
    try:
        from edgepad.runtime import align as runtime_align
    except ImportError:
        runtime_align = None
    if runtime_align is not None and hasattr(runtime_align, "align_face"):
        return runtime_align.align_face(image_bgr, np.asarray(landmarks, np.float32), size)
    return _align_similarity(image_bgr, np.asarray(landmarks, np.float32), size)


def _runtime_detector(settings: DetectorSettings) -> FaceDetector | None:
    try:
        from edgepad.runtime import mtcnn as runtime_mtcnn  # noqa: F401
    except ImportError:
        return None
    return None  # wired when the runtime's detector API lands


class ReferenceMtcnnDetector:
    """The `mtcnn` package (TensorFlow), used only until the runtime's detector is importable."""

    def __init__(self, settings: DetectorSettings):
        from mtcnn import MTCNN

        self._mtcnn = MTCNN()
        self._settings = settings

    def detect(self, image_bgr: np.ndarray) -> list[DetectedFace]:
        import cv2

        p, r, o = self._settings.thresholds
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        found = self._mtcnn.detect_faces(rgb, box_format="xyxy", threshold_pnet=p, threshold_rnet=r,
                                         threshold_onet=o)
        faces = []
        for face in found:
            points = face["keypoints"]
            landmarks = np.array([points[k] for k in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")],
                                 np.float32)
            x1, y1, x2, y2 = (float(v) for v in face["box"])
            if min(x2 - x1, y2 - y1) >= self._settings.min_face_size:
                faces.append(DetectedFace((x1, y1, x2, y2), float(face["confidence"]), landmarks))
        return faces


# insightface's ArcFace template for 112x112 (the seed's).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)


def _align_similarity(image_bgr: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    import cv2

    template = ARCFACE_TEMPLATE * (size / 112.0)
    matrix = _umeyama(landmarks, template)
    return cv2.warpAffine(image_bgr, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)


def _umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform src -> dst (Umeyama 1991), as a 2x3 matrix."""
    src = src.astype(np.float64)
    dst = dst.astype(np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(covariance)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_c.var(0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def largest_face(faces: Sequence[DetectedFace], min_score: float = 0.0) -> DetectedFace | None:
    """The face the crop was cut around: the largest confident one."""
    candidates = [f for f in faces if f.score >= min_score]
    return max(candidates, key=lambda f: f.area) if candidates else None
