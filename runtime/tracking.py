"""Video: detect once, then follow each face cheaply (the seed's HyperFT notes).

Per frame, each track is searched by template matching (cv2.matchTemplate) in a window around its last box,
then ONet alone refines the box and landmarks and says whether it is still a face: a track whose ONet face
score falls below `min_face_score` is dropped. Every `redetect_every` frames the full detector runs on the
frame with the tracked faces blacked out, so it only adds faces that are new. Each track keeps an
exponentially smoothed live score, so one bad frame does not flip the decision.

Between full detections, faces that come into view are found within a few frames by a cheap watch: every
`watch_every` frames the detector (PNet stricter) runs on one edge strip of the picture, mostly the edge the
picture flows in from as the tracked faces move (a pan, a zoom out), else the four in turn; and, in the few
frames after a track is lost (a face covered or blurred for a moment), around its place: the face found there
gets its old id back. Tracked faces are blacked out there as well, so a watch never finds a face twice.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from .boxes import clip_boxes, iou_matrix
from .detector import Face
from .pipeline import FacePipeline, FrameResult
from .preprocess import to_bgr

TEMPLATE_WIDTH = 32  # faces are matched at this width: cost independent of face size
FLOW_PIXELS = 0.5  # tracks moving more than this per frame (mean) mean the picture flows in from that side
LOST_IOU = 0.3  # a new face overlapping a just lost track this much is that face again: it keeps its id
FLOW_ZOOM = 0.005  # tracks shrinking by more than this fraction per frame: the picture flows in from every side


@dataclass
class TrackerSettings:
    redetect_every: int = 15  # frames between full detections (the timer)
    search_margin: float = 0.5  # the search window extends the last box by this fraction of its size
    min_face_score: float = 0.5  # ONet face probability below which a track is dropped
    live_smoothing: float = 0.3  # weight of the newest live probability in the running average
    duplicate_iou: float = 0.5  # two tracks overlapping more than this are one face
    watch: bool = True  # between full detections, look for new faces on an edge strip (or where a track was lost)
    watch_every: int = 3  # frames between two edge watches (a lost track's place is watched every frame)
    edge_faces: float = 1.3  # an edge strip is this many of the largest faces seen wide (at least 3 minimum faces)
    watch_pnet_threshold: float = 0.8  # PNet's face probability threshold in the watch (a full detection: 0.6)
    lost_frames: int = 4  # frames a lost track's place is watched (from the next frame on) and its id kept


@dataclass
class Lost:
    box: np.ndarray
    track_id: int
    frames_left: int
    watched: int = -1  # the frame its place was last watched


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
        self._lost: List[Lost] = []  # tracks lost in the last few frames: their place is watched, their id kept
        self._edge = 0  # the edge strip watched next
        self._largest_face = 0.0
        self._watches = 0
        self._flow = (0.0, 0.0, 1.0)  # mean track motion in the last frame: dx, dy (px), size ratio

    def process(self, image_bgr: np.ndarray) -> FrameResult:
        start = time.perf_counter()
        image_bgr = to_bgr(image_bgr)
        gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
        timings: Dict[str, float] = {"detect": 0.0, "track": 0.0}
        for lost in self._lost:
            lost.frames_left -= 1
        self._lost = [lost for lost in self._lost if lost.frames_left >= 0]
        if self.tracks:
            self._follow(image_bgr, gray)
            timings["track"] = (time.perf_counter() - start) * 1e3
        if self.frame_index % max(self.settings.redetect_every, 1) == 0:  # the re-detection timer
            detect_start = time.perf_counter()
            self._add_new_faces(image_bgr, gray)
            timings["detect"] = (time.perf_counter() - detect_start) * 1e3
        elif self.settings.watch:
            watch_start = time.perf_counter()
            region = self._watch_region(gray.shape)
            if region is not None:
                self._add_new_faces(image_bgr, gray, region)
            timings["watch"] = (time.perf_counter() - watch_start) * 1e3
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
        moved = np.array([self._match(gray, track) for track in self.tracks])
        refined, landmarks = self.pipeline.detector.refine(image_bgr, moved)
        # Where ONet doubts the face at the template's place, it also judges the place the face was; the better
        # one wins (a half visible face at the border can fool the template match). Only then: ONet is the cost.
        doubtful = np.flatnonzero(refined[:, 4] < self.settings.min_face_score)
        if len(doubtful):
            again, points = self.pipeline.detector.refine(image_bgr, np.array([self.tracks[i].box for i in doubtful]))
            better = again[:, 4] > refined[doubtful, 4]
            refined[doubtful[better]], landmarks[doubtful[better]] = again[better], points[better]
        before = np.array([t.box for t in self.tracks])
        good = refined[:, 4] >= self.settings.min_face_score
        if good.any():
            shift = (refined[good, :4] - before[good]).reshape(-1, 2, 2).mean(axis=1).mean(axis=0)
            sizes = np.maximum(before[good, 2] - before[good, 0], 1.0)
            self._flow = (float(shift[0]), float(shift[1]),
                          float(np.median((refined[good, 2] - refined[good, 0]) / sizes)))
        kept = []
        for track, box, points in zip(self.tracks, refined, landmarks):
            if box[4] < self.settings.min_face_score or box[2] - box[0] < 4 or box[3] - box[1] < 4:
                # left, turned away or covered: watch its place, and give its id back if the face shows again
                self._lost.append(Lost(track.box.copy(), track.track_id, self.settings.lost_frames))
                continue
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
    def _reuse_id(self, box: np.ndarray) -> int:
        """The id of a track lost here a few frames ago (the same face, back), else a new one."""
        if self._lost:
            overlaps = iou_matrix(box[None], np.array([lost.box for lost in self._lost]))[0]
            best = int(overlaps.argmax())
            if overlaps[best] >= LOST_IOU:
                return self._lost.pop(best).track_id
        self._next_id += 1
        return self._next_id - 1

    def _watch_region(self, shape) -> Optional[Tuple[int, int, int, int]]:
        """This frame's watched region (x1, y1, x2, y2), or None: around a lost track while there is one, else every
        `watch_every` frames an edge strip, mostly one where the picture flows in (the tracked faces move away
        from it), else the four in turn."""
        height, width = shape[:2]
        waiting = [lost for lost in self._lost if lost.frames_left < self.settings.lost_frames]  # lost before
        if waiting:
            lost = min(waiting, key=lambda entry: entry.watched)  # the one watched least recently
            lost.watched = self.frame_index
            x1, y1, x2, y2 = lost.box
            grow_x, grow_y = (x2 - x1) * 0.75, (y2 - y1) * 0.75
            return _clip_region(x1 - grow_x, y1 - grow_y, x2 + grow_x, y2 + grow_y, width, height)
        if (self.frame_index % max(self.settings.redetect_every, 1)) % max(self.settings.watch_every, 1):
            return None
        self._watches += 1
        inflow = self._inflow_edges()
        if inflow and self._watches % 4:  # three watches of four where the picture comes in, the fourth in turn
            side = inflow[self._watches % len(inflow)]
        else:
            side = self._edge % 4
            self._edge += 1
        minimum = self.pipeline.detector.settings.min_face_size
        strip = max(self.settings.edge_faces * self._largest_face, 3 * minimum)
        return _clip_region(*[(width - strip, 0, width, height), (0, 0, strip, height),
                              (0, height - strip, width, height), (0, 0, width, strip)][side], width, height)

    def _inflow_edges(self) -> List[int]:
        """Edges (0 right, 1 left, 2 bottom, 3 top) the picture comes in from, judged by how the tracks moved."""
        dx, dy, growth = self._flow
        edges = [side for side, inflow in enumerate((-dx, dx, -dy, dy)) if inflow > FLOW_PIXELS]
        return [0, 1, 2, 3] if growth < 1.0 - FLOW_ZOOM else edges  # zooming out: every edge

    def _add_new_faces(self, image_bgr: np.ndarray, gray: np.ndarray, region=None) -> None:
        """Faces in the frame (or in `region` of it) that no track follows yet become new tracks."""
        x0, y0, x_end, y_end = region or (0, 0, image_bgr.shape[1], image_bgr.shape[0])
        masked = image_bgr[y0:y_end, x0:x_end]
        masked = masked.copy() if self.tracks else np.ascontiguousarray(masked)
        if self.tracks:
            for track in self.tracks:  # tracked faces are not searched again, so they are not found twice
                x1, y1, x2, y2 = np.round(track.box - [x0, y0, x0, y0]).astype(int)
                masked[max(y1, 0):max(y2 + 1, 0), max(x1, 0):max(x2 + 1, 0)] = 0
        detector = self.pipeline.detector
        thresholds = None
        if region is not None:  # the watch: PNet stricter than a full detection, so RNet sees only likely faces
            thresholds = (max(detector.settings.thresholds[0], self.settings.watch_pnet_threshold),
                          *detector.settings.thresholds[1:])
        found = detector.detect(masked, clip=False, thresholds=thresholds)
        existing = np.array([t.box for t in self.tracks]) if self.tracks else np.zeros((0, 4))
        for face in found:
            box = face.box + [x0, y0, x0, y0]
            if len(existing) and iou_matrix(box[None], existing).max() > self.settings.duplicate_iou:
                continue
            landmarks = face.landmarks + [x0, y0]
            self.tracks.append(Track(self._reuse_id(box), box, landmarks, face.score, _template(gray, box)))
        self._largest_face = max([self._largest_face] + [t.box[2] - t.box[0] for t in self.tracks])


def _clip_region(x1, y1, x2, y2, width: int, height: int) -> Tuple[int, int, int, int]:
    return (int(max(x1, 0)), int(max(y1, 0)), int(min(np.ceil(x2), width)), int(min(np.ceil(y2), height)))


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
