"""A video made from a still photo: a slow pan and zoom over it, written with cv2.VideoWriter (MJPG in .avi)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def pan_zoom_frames(photo: np.ndarray, count: int = 40, size=(800, 560)):
    """Windows sliding right and zooming in by ~10% over `count` frames, each resized to `size` (w, h)."""
    height, width = photo.shape[:2]
    out_w, out_h = size
    for i in range(count):
        t = i / max(count - 1, 1)
        zoom = 1.0 - 0.1 * t  # the window shrinks: faces grow
        win_w, win_h = int(width * 0.9 * zoom), int(height * 0.9 * zoom)
        x0 = int((width - win_w) * (0.2 + 0.6 * t))
        y0 = int((height - win_h) * 0.5)
        window = photo[y0:y0 + win_h, x0:x0 + win_w]
        yield cv2.resize(window, (out_w, out_h), interpolation=cv2.INTER_AREA)


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
