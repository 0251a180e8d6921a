"""MTCNN face detection: PNet over an image pyramid, RNet and ONet on batched crops, box regression, NMS, landmarks.

The nets are edgepad convert outputs (pnet/, rnet/, onet/) run through any backend. Unlike the `mtcnn` 1.0.0
package, the pyramid starts at the scale where a face of `min_face_size` pixels fills PNet's 12x12 window and
stops where the image gets smaller than that window, so every minimum face size finds faces.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .backends import InferenceModel, load_model
from .boxes import clip_boxes, nms, square
from .preprocess import to_bgr

DEFAULT_MIN_FACE_SIZE = 40.0  # without a PNet compiled for the NPU at another one (see bundle.load_pipeline)
PNET_CELL = 12
PNET_STRIDE = 2
CROP_BATCH = 256  # RNet/ONet crops per backend call; bounds memory on a crowded frame


@dataclass
class DetectorSettings:
    # None: the one PNet's NBGs were compiled for (its card's mtcnn.min_face_size: every pyramid size has its NBG),
    # else DEFAULT_MIN_FACE_SIZE; MtcnnDetector settles it
    min_face_size: Optional[float] = DEFAULT_MIN_FACE_SIZE
    thresholds: Sequence[float] = (0.6, 0.7, 0.7)  # PNet, RNet, ONet face probability
    scale_factor: float = 0.709
    nms_pnet_scale: float = 0.5  # within one pyramid scale
    nms_pnet: float = 0.7  # across scales
    nms_rnet: float = 0.7
    nms_onet: float = 0.7  # intersection over the smaller box: drops a box inside another


def parse_thresholds(text: str) -> Tuple[float, float, float]:
    """'0.6,0.7,0.7' (PNet, RNet, ONet) as DetectorSettings.thresholds; ValueError naming the option and the fix."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"--detect-thresholds {text}: give three probabilities, e.g. 0.6,0.7,0.7")
    return values


@dataclass
class Face:
    box: np.ndarray  # x1, y1, x2, y2 in image pixels
    score: float  # ONet face probability
    landmarks: np.ndarray  # (5, 2): left eye (image left), right eye, nose, left mouth corner, right mouth corner
    live: Optional[float] = None  # live probability from the classifier, when there is one
    is_live: Optional[bool] = None
    track: Optional[int] = None
    embedding: Optional[np.ndarray] = None  # L2-normalised, from an embedding model (then there is no live score)
    nearest: Optional[str] = None  # with a gallery: the nearest enrolled person,
    distance: Optional[float] = None  # the distance to them,
    identity: Optional[str] = None  # and that person when the distance is below the match threshold, else None

    def to_json(self) -> dict:
        data = {
            "box": [round(float(v), 1) for v in self.box],
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
            "score": round(float(self.score), 4),
            "live": None if self.live is None else round(float(self.live), 4),
            "is_live": self.is_live,
            "track": self.track,
        }
        if self.embedding is not None:
            if self.live is None:
                del data["live"], data["is_live"]  # a recognition model gives no live score
            data["embedding"] = [round(float(v), 6) for v in self.embedding]
            if self.nearest is not None:
                data.update(identity=self.identity, nearest=self.nearest, distance=round(float(self.distance), 6))
        return data


@dataclass
class DetectionStages:
    """Candidates left after each stage, for --bench and debugging."""

    pnet: int = 0
    rnet: int = 0
    onet: int = 0
    scales: List[float] = field(default_factory=list)
    frame: Tuple[int, int] = (0, 0)  # (H, W) PNet's pyramid ran on: the image, or a compiled frame holding it


class MtcnnDetector:
    def __init__(self, pnet: InferenceModel, rnet: InferenceModel, onet: InferenceModel,
                 settings: Optional[DetectorSettings] = None):
        self.pnet, self.rnet, self.onet = pnet, rnet, onet
        settings = settings or DetectorSettings()
        if settings.min_face_size is None:
            mtcnn = pnet.card.mtcnn
            compiled = mtcnn.min_face_size if mtcnn is not None else None
            settings = replace(settings, min_face_size=float(compiled or DEFAULT_MIN_FACE_SIZE))
        self.settings = settings
        preprocess = pnet.card.preprocess
        self.mean = float(preprocess.mean[0])
        self.std = float(preprocess.std[0])
        self.rgb = preprocess.channel_order == "rgb"
        self.last_stages = DetectionStages()
        self._padded_sizes: set = set()  # image sizes already said to run PNet padded to a compiled frame

    # -- public --------------------------------------------------------------------------------------------------
    def detect(self, image_bgr: np.ndarray, clip: bool = True,
               thresholds: Optional[Sequence[float]] = None) -> List[Face]:
        """Faces in a uint8 BGR image, best first; boxes clipped to the image unless clip=False (tracking);
        `thresholds` (PNet, RNet, ONet) instead of the settings' for this call."""
        image = self._model_order(to_bgr(image_bgr))
        thresholds = tuple(thresholds or self.settings.thresholds)
        self.last_stages = DetectionStages()
        boxes = self._pnet_stage(image, thresholds[0])
        self.last_stages.pnet = len(boxes)
        if len(boxes):
            boxes = self._rnet_stage(image, boxes, thresholds[1])
        self.last_stages.rnet = len(boxes)
        if not len(boxes):
            return []
        boxes, landmarks = self._onet_stage(image, boxes, thresholds[2])
        self.last_stages.onet = len(boxes)
        height, width = image.shape[:2]
        final = clip_boxes(boxes[:, :4], width, height) if clip else boxes[:, :4]
        return [Face(final[i], float(boxes[i, 4]), landmarks[i]) for i in range(len(boxes))]

    def refine(self, image_bgr: np.ndarray, boxes: np.ndarray):
        """ONet alone on given boxes (tracking): (boxes with score, landmarks), one row per input box, unfiltered."""
        image = self._model_order(to_bgr(image_bgr))
        if not len(boxes):
            return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
        squared = square(np.asarray(boxes, np.float64)[:, :4])
        crops = self._crops(image, squared, 48)
        out = _run_batched(self.onet, crops)
        return self._apply_onet(squared, out)

    def scales(self, height: int, width: int) -> List[float]:
        return pyramid_scales(height, width, self.settings.min_face_size, self.settings.scale_factor)

    # -- stages --------------------------------------------------------------------------------------------------
    def _model_order(self, image_bgr: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB) if self.rgb else image_bgr

    def _normalise(self, pixels: np.ndarray) -> np.ndarray:
        return (pixels.astype(np.float32) - self.mean) / self.std

    def pnet_frame(self, height: int, width: int) -> Tuple[int, int]:
        """(H, W) PNet's pyramid is computed on: the image's own size, or, when PNet runs on fixed NPU sizes that do
        not cover this image's pyramid, the smallest camera frame it was compiled for that holds the image (the
        image padded black at the bottom and right, as RNet's and ONet's crops are black outside it), so every
        level finds its NBG; a frame larger than all of them keeps its size (those levels run on the CPU)."""
        compiled = self.pnet.fixed_input_sizes()
        mtcnn = self.pnet.card.mtcnn
        if not compiled or mtcnn is None or not mtcnn.frame_sizes:
            return height, width

        def covered(h: int, w: int) -> bool:
            return all(f"{ph}x{pw}" in compiled for ph, pw in pyramid_sizes(h, w, self.settings.min_face_size,
                                                                            self.settings.scale_factor))

        if covered(height, width):
            return height, width
        frames = sorted(((int(h), int(w)) for w, h in (size.split("x") for size in mtcnn.frame_sizes)),
                        key=lambda hw: hw[0] * hw[1])
        for frame_h, frame_w in frames:
            if frame_h >= height and frame_w >= width and covered(frame_h, frame_w):
                return frame_h, frame_w
        return height, width

    def _pnet_stage(self, image: np.ndarray, threshold: float) -> np.ndarray:
        height, width = image.shape[:2]
        frame_h, frame_w = self.pnet_frame(height, width)
        if (frame_h, frame_w) != (height, width):
            image = cv2.copyMakeBorder(image, 0, frame_h - height, 0, frame_w - width, cv2.BORDER_CONSTANT, value=0)
            if (height, width) not in self._padded_sizes:
                self._padded_sizes.add((height, width))
                getattr(self.pnet, "warn", lambda message: None)(
                    f"pnet: a {width}x{height} image runs PNet's pyramid padded to the {frame_w}x{frame_h} frame "
                    "it was compiled for, so every level runs on the NPU")
            height, width = frame_h, frame_w
        self.last_stages.frame = (height, width)
        settings = self.settings
        candidates = []
        self.last_stages.scales = self.scales(height, width)
        scaled = image
        for scale in self.last_stages.scales:
            h, w = int(math.ceil(height * scale)), int(math.ceil(width * scale))
            # each level from the one before: area averaging over a 0.709 step costs a fraction of the full image
            scaled = cv2.resize(scaled, (w, h), interpolation=cv2.INTER_AREA)
            out = self.pnet.run(self._normalise(scaled)[None])
            boxes = _pnet_boxes(out["bbox_reg"][0], out["face_prob"][0], scale, threshold)
            if len(boxes):
                candidates.append(boxes[nms(boxes, settings.nms_pnet_scale)])
        if not candidates:
            return np.zeros((0, 5))
        boxes = np.concatenate(candidates)
        boxes = boxes[nms(boxes, settings.nms_pnet)]
        return np.hstack([square(boxes[:, :4]), boxes[:, 4:5]])

    def _rnet_stage(self, image: np.ndarray, boxes: np.ndarray, threshold: float) -> np.ndarray:
        out = _run_batched(self.rnet, self._crops(image, boxes, 24))
        scores = out["face_prob"][:, 1]
        keep = scores > threshold
        boxes = _regress(boxes[keep, :4], out["bbox_reg"][keep])
        boxes = np.hstack([boxes, scores[keep, None]])
        boxes = boxes[nms(boxes, self.settings.nms_rnet)]
        return np.hstack([square(boxes[:, :4]), boxes[:, 4:5]])

    def _onet_stage(self, image: np.ndarray, boxes: np.ndarray, threshold: float):
        out = _run_batched(self.onet, self._crops(image, boxes, 48))
        refined, landmarks = self._apply_onet(boxes[:, :4], out)
        keep = refined[:, 4] > threshold
        refined, landmarks = refined[keep], landmarks[keep]
        order = nms(refined, self.settings.nms_onet, method="min")
        return refined[order], landmarks[order]

    @staticmethod
    def _apply_onet(boxes: np.ndarray, out: dict):
        widths = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        heights = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = out["landmarks"]
        xs = widths * points[:, 0:5] + boxes[:, 0:1] - 1
        ys = heights * points[:, 5:10] + boxes[:, 1:2] - 1
        landmarks = np.stack([xs, ys], axis=-1).astype(np.float32)
        refined = np.hstack([_regress(boxes, out["bbox_reg"]), out["face_prob"][:, 1:2]])
        return refined, landmarks

    def _crops(self, image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
        """Each box resampled to size x size (bilinear, black outside the image), normalised, as one batch."""
        crops = np.empty((len(boxes), size, size, 3), np.uint8)
        for i, (x1, y1, x2, y2) in enumerate(boxes[:, :4]):
            # pixels x1..x2 inclusive onto 0..size-1, pixel centres aligned as cv2.resize aligns them
            sx = size / max(x2 - x1 + 1, 1.0)
            sy = size / max(y2 - y1 + 1, 1.0)
            matrix = np.array([[sx, 0, sx * (0.5 - x1) - 0.5], [0, sy, sy * (0.5 - y1) - 0.5]], np.float32)
            crops[i] = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return self._normalise(crops)


def pyramid_scales(height: int, width: int, min_face_size: float, scale_factor: float = 0.709) -> List[float]:
    """PNet's scales: the first maps min_face_size to its 12 px window, the last keeps the image >= 12 px."""
    scale = PNET_CELL / max(float(min_face_size), 1.0)
    shortest = min(height, width) * scale
    scales = []
    while shortest >= PNET_CELL:
        scales.append(scale)
        scale *= scale_factor
        shortest *= scale_factor
    return scales


def pyramid_sizes(height: int, width: int, min_face_size: float, scale_factor: float = 0.709):
    """(H, W) of every PNet input for frames of this size: the fixed sizes an NPU needs one PNet model for."""
    return [(int(math.ceil(height * s)), int(math.ceil(width * s)))
            for s in pyramid_scales(height, width, min_face_size, scale_factor)]


def _pnet_boxes(regression: np.ndarray, probability: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """PNet's (H', W') maps -> boxes in image pixels with regression applied, and their scores."""
    ys, xs = np.where(probability[:, :, 1] > threshold)
    if not len(ys):
        return np.zeros((0, 5))
    reg = regression[ys, xs]
    x1 = xs * PNET_STRIDE + reg[:, 0] * PNET_CELL
    y1 = ys * PNET_STRIDE + reg[:, 1] * PNET_CELL
    x2 = xs * PNET_STRIDE + PNET_CELL + reg[:, 2] * PNET_CELL
    y2 = ys * PNET_STRIDE + PNET_CELL + reg[:, 3] * PNET_CELL
    boxes = np.stack([x1, y1, x2, y2], axis=1) / scale
    return np.hstack([boxes, probability[ys, xs, 1][:, None]])


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    widths = boxes[:, 2] - boxes[:, 0] + 1
    heights = boxes[:, 3] - boxes[:, 1] + 1
    return boxes[:, :4] + offsets * np.stack([widths, heights, widths, heights], axis=1)


def _run_batched(model: InferenceModel, crops: np.ndarray) -> dict:
    parts = [model.run(crops[i:i + CROP_BATCH]) for i in range(0, len(crops), CROP_BATCH)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def load_detector(models_root: str, backend: Optional[str] = None,
                  settings: Optional[DetectorSettings] = None) -> MtcnnDetector:
    """The detector from a folder holding pnet/, rnet/, onet/ (a bundle's models/, or the host's cache)."""
    nets = [load_model(os.path.join(models_root, name), backend) for name in ("pnet", "rnet", "onet")]
    return MtcnnDetector(*nets, settings=settings)
