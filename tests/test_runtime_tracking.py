"""Tracking on a video made from a real photo: the same faces as detecting every frame, at a fraction of the
detections."""
from __future__ import annotations

import numpy as np
import pytest

from support.face_video import pan_zoom_frames
from support.runtime_fixtures import iou

FRAMES = 30
REDETECT_EVERY = 10


@pytest.fixture(scope="module")
def video_frames(t1_image):
    return list(pan_zoom_frames(t1_image, FRAMES))


@pytest.fixture(scope="module")
def per_frame(pipeline, video_frames):
    return [pipeline.process(frame) for frame in video_frames]


@pytest.fixture(scope="module")
def tracked(pipeline, video_frames):
    from edgepad.runtime.tracking import FaceTracker, TrackerSettings

    tracker = FaceTracker(pipeline, TrackerSettings(redetect_every=REDETECT_EVERY))
    return [tracker.process(frame) for frame in video_frames]


def inside(box, frame, margin=2):
    height, width = frame.shape[:2]
    return box[0] > margin and box[1] > margin and box[2] < width - 1 - margin and box[3] < height - 1 - margin


def test_tracking_keeps_the_faces_that_detection_finds(video_frames, per_frame, tracked):
    matched, total = 0, 0
    for frame, detected, followed in zip(video_frames, per_frame, tracked, strict=True):
        for face in detected.faces:
            if not inside(face.box, frame):
                continue  # faces entering or leaving at the border are found by the next re-detection
            total += 1
            overlaps = [iou(face.box, t.box) for t in followed.faces]
            if overlaps and max(overlaps) >= 0.5:
                matched += 1
    assert total >= 3.5 * FRAMES
    assert matched / total >= 0.95, (matched, total)


def test_interior_faces_keep_their_track_id(video_frames, tracked):
    first = {face.track: face.box for face in tracked[0].faces if inside(face.box, video_frames[0], 40)}
    assert len(first) >= 3
    for result in tracked:
        ids = {face.track for face in result.faces}
        assert set(first) <= ids, (sorted(first), sorted(ids))


def test_full_detection_runs_only_on_the_timer(tracked):
    detected_frames = [r.frame for r in tracked if r.timings_ms["detect"] > 0]
    assert detected_frames == list(range(0, FRAMES, REDETECT_EVERY))


def test_redetection_does_not_find_tracked_faces_twice(tracked):
    for result in tracked:
        boxes = [f.box for f in result.faces]
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                assert iou(boxes[i], boxes[j]) < 0.3, (result.frame, boxes[i], boxes[j])
        assert len({f.track for f in result.faces}) == len(result.faces)


def test_a_track_is_dropped_when_its_face_is_gone(pipeline, video_frames):
    from edgepad.runtime.tracking import FaceTracker, TrackerSettings

    tracker = FaceTracker(pipeline, TrackerSettings(redetect_every=100))
    assert len(tracker.process(video_frames[0]).faces) >= 4
    blank = np.full_like(video_frames[0], 90)
    assert tracker.process(blank).faces == []
    assert tracker.tracks == []


def test_each_track_smooths_its_live_score(pipeline, video_frames, per_frame, tracked):
    """The smoothed score of a face varies less across frames than the per-frame score of the same face."""
    track_id = tracked[0].faces[0].track
    smoothed, raw = [], []
    for detected, followed in zip(per_frame, tracked, strict=True):
        face = next((f for f in followed.faces if f.track == track_id), None)
        if face is None:
            continue
        overlaps = [iou(face.box, d.box) for d in detected.faces]
        if overlaps and max(overlaps) >= 0.5:
            smoothed.append(face.live)
            raw.append(detected.faces[int(np.argmax(overlaps))].live)
    assert len(raw) >= FRAMES * 0.8 and all(0.0 <= v <= 1.0 for v in smoothed)
    assert np.std(np.diff(smoothed)) < np.std(np.diff(raw))
