"""Tracking on a video made from a real photo: the same faces as detecting every frame, at a fraction of the
detections.

Where each face of the photo is in every frame is known from how the frame was cut (support.face_video), with
the `mtcnn` package's boxes on the photo as the independent reference: recall and identity are measured
against that truth, on the pan/zoom and on the same video played backwards (faces then enter on the left and
the view zooms out).
"""
from __future__ import annotations

import numpy as np
import pytest

from support.face_video import pan_zoom_frames, true_faces
from support.runtime_fixtures import iou

FRAMES = 30
REDETECT_EVERY = 10
LONG = 60  # frames of the recall/identity videos: faces enter and leave during them


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


@pytest.fixture(scope="module")
def long_videos(t1_image, t1_true_faces):
    """{direction: (frames, per frame {face index: true box wholly in view})}, forwards and backwards."""
    frames = list(pan_zoom_frames(t1_image, LONG))
    truth = true_faces(t1_true_faces, t1_image.shape, LONG)
    return {"forwards": (frames, truth), "backwards": (frames[::-1], truth[::-1])}


def track_video(pipeline, frames, **settings):
    from edgepad.runtime.tracking import FaceTracker, TrackerSettings

    tracker = FaceTracker(pipeline, TrackerSettings(**settings))
    return [tracker.process(frame) for frame in frames]


def match_truth(results, truth):
    """Per frame {face index: track id of the tracked face over it (IoU >= 0.5), or None}."""
    matches = []
    for result, faces in zip(results, truth, strict=True):
        row = {}
        for index, box in faces.items():
            overlaps = [iou(box, face.box) for face in result.faces]
            best = int(np.argmax(overlaps)) if overlaps else None
            row[index] = result.faces[best].track if best is not None and overlaps[best] >= 0.5 else None
        matches.append(row)
    return matches


@pytest.mark.parametrize("direction", ["forwards", "backwards"])
def test_tracking_keeps_every_true_face_with_one_identity(pipeline, long_videos, direction):
    frames, truth = long_videos[direction]
    matches = match_truth(track_video(pipeline, frames), truth)  # the default settings
    found = [track for row in matches for track in row.values()]
    assert len(found) >= 3.5 * LONG
    recall = sum(track is not None for track in found) / len(found)
    assert recall >= 0.97, (direction, recall)
    identities = {}
    for row in matches:  # while a face stays in view its track id never changes (faces here never leave and return)
        for index, track in row.items():
            if track is not None:
                assert identities.setdefault(index, track) == track, (direction, index, identities[index], track)
    assert len(set(identities.values())) == len(identities)  # and no two faces share one


def test_a_face_entering_between_detections_is_found_within_a_few_frames(pipeline, long_videos):
    """Backwards, a face enters on the left edge long after the only full detection (frame 0)."""
    frames, truth = long_videos["backwards"]
    matches = match_truth(track_video(pipeline, frames, redetect_every=1000), truth)
    first_in_view = {}
    for frame, row in enumerate(matches):
        for index in row:
            first_in_view.setdefault(index, frame)
    entering = {index: frame for index, frame in first_in_view.items() if frame > 0}
    assert entering  # the video does bring faces in
    for index, frame in entering.items():
        found = [f for f, row in enumerate(matches) if row.get(index) is not None]
        assert found and found[0] <= frame + 3, (index, frame, found[:1])


def test_without_the_watch_an_entering_face_waits_for_the_next_detection(pipeline, long_videos):
    """The check above is not luck of the timer: without the edge watch the same face is never found."""
    frames, truth = long_videos["backwards"]
    matches = match_truth(track_video(pipeline, frames, redetect_every=1000, watch=False), truth)
    assert any(track is None for row in matches for track in row.values())


def test_a_face_covered_for_a_frame_comes_back_with_its_id(pipeline, video_frames):
    """A hand over one face for one frame: its track is lost, its place watched, and it is found again under
    its old id (not as a new face)."""
    from edgepad.runtime.tracking import FaceTracker

    tracker = FaceTracker(pipeline)
    first = tracker.process(video_frames[0])
    face = next(f for f in first.faces if inside(f.box, video_frames[0], 40))
    covered = video_frames[2].copy()
    x1, y1, x2, y2 = np.round(next(f.box for f in tracker.process(video_frames[1]).faces if f.track == face.track))
    covered[int(y1) - 10:int(y2) + 10, int(x1) - 10:int(x2) + 10] = 120
    assert face.track not in {f.track for f in tracker.process(covered).faces}
    for frame in video_frames[3:6]:
        result = tracker.process(frame)
        assert face.track in {f.track for f in result.faces}, (result.frame, [f.track for f in result.faces])
    assert max(f.track for f in result.faces) == max(f.track for f in first.faces)  # no new ids were made
