"""Video: detect once, then follow each face cheaply (the seed's HyperFT notes).

Per frame, each track is searched by template matching (cv2.matchTemplate) in a window around its last box,
then ONet alone refines the box and landmarks and says whether it is still a face: a track whose ONet face
score falls below `min_face_score` is dropped. Every `redetect_every` frames the full detector runs on the
frame with the tracked faces blacked out, so it only adds faces that are new. Each track keeps an
exponentially smoothed live score, so one bad frame does not flip the decision.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import cv2
import numpy as np

from .boxes import clip_boxes, iou_matrix
from .detector import Face
from .pipeline import FacePipeline, FrameResult
from .preprocess import to_bgr

TEMPLATE_WIDTH = 32  # faces are matched at this width: cost independent of face size


@dataclass
class TrackerSettings:
    redetect_every: int = 10  # frames between full detections (the timer)
    search_margin: float = 0.5  # the search window extends the last box by this fraction of its size
    min_face_score: float = 0.5  # ONet face probability below which a track is dropped
    live_smoothing: float = 0.3  # weight of the newest live probability in the running average
    duplicate_iou: float = 0.5  # two tracks overlapping more than this are one face


@dataclass
class Track:
    track_id: int
    box: np.ndarray
    landmarks: np.ndarray
    score: float
    template: np.ndarray
    live: Optional[float] = None
    age: int = 0


class FaceTracker:
    def __init__(self, pipeline: FacePipeline, settings: Optional[TrackerSettings] = None):
        self.pipeline = pipeline
        self.settings = settings or TrackerSettings()
        self.tracks: List[Track] = []
        self.frame_index = 0
        self._next_id = 1

    def process(self, image_bgr: np.ndarray) -> FrameResult:
        start = time.perf_counter()
        image_bgr = to_bgr(image_bgr)
        gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
        timings: Dict[str, float] = {"detect": 0.0, "track": 0.0}
        if self.tracks:
            self._follow(image_bgr, gray)
            timings["track"] = (time.perf_counter() - start) * 1e3
        if self.frame_index % max(self.settings.redetect_every, 1) == 0:  # the re-detection timer
            detect_start = time.perf_counter()
            self._add_new_faces(image_bgr, gray)
            timings["detect"] = (time.perf_counter() - detect_start) * 1e3
        height, width = gray.shape
        boxes = clip_boxes(np.array([t.box for t in self.tracks]).reshape(-1, 4), width, height)
        faces = [Face(box, t.score, t.landmarks.copy(), track=t.track_id) for t, box in zip(self.tracks, boxes)]
        timings.update(self.pipeline.score(image_bgr, faces))
        for track, face in zip(self.tracks, faces):
            if face.live is not None:
                alpha = self.settings.live_smoothing
                track.live = face.live if track.live is None else (1 - alpha) * track.live + alpha * face.live
                face.live = track.live
                face.is_live = self.pipeline.classifier.is_live(track.live)
        timings["total"] = (time.perf_counter() - start) * 1e3
        result = FrameResult(faces, timings, frame=self.frame_index)
        self.frame_index += 1
        return result

    # -- following ---------------------------------------------------------------------------------------------
    def _follow(self, image_bgr: np.ndarray, gray: np.ndarray) -> None:
        count = len(self.tracks)
        moved = np.array([self._match(gray, track) for track in self.tracks])
        # ONet judges both where the template went and where the face was; the better one wins (a half
        # visible face at the border can fool the template match).
        candidates = np.concatenate([moved, np.array([t.box for t in self.tracks])])
        boxes, points = self.pipeline.detector.refine(image_bgr, candidates)
        better = np.where(boxes[:count, 4] >= boxes[count:, 4], np.arange(count), np.arange(count) + count)
        refined, landmarks = boxes[better], points[better]
        kept = []
        for track, box, points in zip(self.tracks, refined, landmarks):
            if box[4] < self.settings.min_face_score or box[2] - box[0] < 4 or box[3] - box[1] < 4:
                continue  # the face left, turned away or was covered
            track.box, track.score, track.landmarks = box[:4], float(box[4]), points
            track.template = _template(gray, track.box)
            track.age += 1
            kept.append(track)
        self.tracks = _drop_duplicates(kept, self.settings.duplicate_iou)

    def _match(self, gray: np.ndarray, track: Track) -> np.ndarray:
        """The track's box moved to where its template matches best inside the search window."""
        x1, y1, x2, y2 = track.box
        w, h = x2 - x1, y2 - y1
        margin = self.settings.search_margin
        scale = TEMPLATE_WIDTH / max(w, 1.0)
        sx1, sy1 = x1 - margin * w, y1 - margin * h
        window = _resample(gray, sx1, sy1, x2 + margin * w, y2 + margin * h, scale)
        response = cv2.matchTemplate(window, track.template, cv2.TM_CCOEFF_NORMED)
        _, _, _, (best_x, best_y) = cv2.minMaxLoc(response)
        nx1, ny1 = sx1 + best_x / scale, sy1 + best_y / scale
        return np.array([nx1, ny1, nx1 + w, ny1 + h])

    # -- re-detection ------------------------------------------------------------------------------------------
    def _add_new_faces(self, image_bgr: np.ndarray, gray: np.ndarray) -> None:
        masked = image_bgr
        if self.tracks:
            masked = image_bgr.copy()
            for track in self.tracks:  # tracked faces are not searched again, so they are not found twice
                x1, y1, x2, y2 = np.round(track.box).astype(int)
                masked[max(y1, 0):max(y2 + 1, 0), max(x1, 0):max(x2 + 1, 0)] = 0
        found = self.pipeline.detector.detect(masked, clip=False)
        existing = np.array([t.box for t in self.tracks]) if self.tracks else np.zeros((0, 4))
        for face in found:
            if len(existing) and iou_matrix(face.box[None], existing).max() > self.settings.duplicate_iou:
                continue
            self.tracks.append(Track(self._next_id, face.box, face.landmarks, face.score, _template(gray, face.box)))
            self._next_id += 1


def _template(gray: np.ndarray, box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = box
    return _resample(gray, x1, y1, x2, y2, TEMPLATE_WIDTH / max(x2 - x1, 1.0))


def _resample(gray: np.ndarray, x1: float, y1: float, x2: float, y2: float, scale: float) -> np.ndarray:
    """The region x1..x2, y1..y2 scaled by `scale`; parts outside the image repeat its edge, so a face at the
    border keeps the same geometry in its template and in the search window."""
    size = (max(int(round((x2 - x1) * scale)), 4), max(int(round((y2 - y1) * scale)), 4))
    matrix = np.array([[scale, 0, -x1 * scale], [0, scale, -y1 * scale]], np.float32)
    return cv2.warpAffine(gray, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _drop_duplicates(tracks: List[Track], threshold: float) -> List[Track]:
    """Two tracks that drifted onto one face: keep the older."""
    kept: List[Track] = []
    for track in sorted(tracks, key=lambda t: t.track_id):
        if kept and iou_matrix(track.box[None], np.array([k.box for k in kept])).max() > threshold:
            continue
        kept.append(track)
    return kept
