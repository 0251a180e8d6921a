"""A video made from a still photo: a slow pan and zoom over it, written with cv2.VideoWriter (MJPG in .avi).

Each frame is a window of the photo resized to the frame size, so where a face of the photo is in every frame
is known exactly from how the frame was cut (`true_faces`): the ground truth for tracking's recall.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

FRAME_SIZE = (800, 560)  # w, h


def pan_zoom_windows(photo_shape, count: int = 40):
    """(x0, y0, w, h) of the photo each frame shows: sliding right and zooming in by ~10% over `count` frames."""
    height, width = photo_shape[:2]
    for i in range(count):
        t = i / max(count - 1, 1)
        zoom = 1.0 - 0.1 * t  # the window shrinks: faces grow
        win_w, win_h = int(width * 0.9 * zoom), int(height * 0.9 * zoom)
        x0 = int((width - win_w) * (0.2 + 0.6 * t))
        y0 = int((height - win_h) * 0.5)
        yield x0, y0, win_w, win_h


def pan_zoom_frames(photo: np.ndarray, count: int = 40, size=FRAME_SIZE):
    """The frames of the pan/zoom, each window resized to `size` (w, h)."""
    out_w, out_h = size
    for x0, y0, win_w, win_h in pan_zoom_windows(photo.shape, count):
        window = photo[y0:y0 + win_h, x0:x0 + win_w]
        yield cv2.resize(window, (out_w, out_h), interpolation=cv2.INTER_AREA)


def true_faces(photo_boxes, photo_shape, count: int = 40, size=FRAME_SIZE, margin: float = 0.0):
    """Per frame, {index in photo_boxes: box in frame pixels} of the photo's faces wholly in view
    (`margin` pixels inside the frame's edges)."""
    out_w, out_h = size
    boxes = np.asarray(photo_boxes, np.float64).reshape(-1, 4)
    frames = []
    for x0, y0, win_w, win_h in pan_zoom_windows(photo_shape, count):
        scale = np.array([out_w / win_w, out_h / win_h, out_w / win_w, out_h / win_h])
        mapped = (boxes - [x0, y0, x0, y0]) * scale
        frames.append({i: box for i, box in enumerate(mapped)
                       if box[0] >= margin and box[1] >= margin and box[2] <= out_w - 1 - margin
                       and box[3] <= out_h - 1 - margin})
    return frames


def write_video(frames, path: Path, fps: float = 25.0) -> Path:
    frames = list(frames)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} with MJPG")
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path
