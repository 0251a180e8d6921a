"""Reading images, videos and cameras into uint8 BGR frames, with one clear error for what cannot be read."""
from __future__ import annotations

import os
from typing import Iterator

import cv2
import numpy as np

from .preprocess import to_bgr

# The image files edgepad reads (OpenCV decodes them all): `edgepad run`, calibration and sample images, crops.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})


def is_image_file(path) -> bool:
    """Whether `path` (str or Path) names an image by its suffix, whatever its case."""
    return os.path.splitext(str(path))[1].lower() in IMAGE_SUFFIXES


class InputError(Exception):
    """An image, video or camera that cannot be read: the message names it and what to do."""


def read_image(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: the file is empty; give a JPEG or PNG image")
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise InputError(f"{path}: not a readable image (OpenCV cannot decode it); give a JPEG or PNG image")
    return as_frame(image)


def as_frame(image: np.ndarray) -> np.ndarray:
    """Gray, BGRA or 16-bit input as contiguous 8-bit BGR: what every stage takes."""
    return np.ascontiguousarray(to_bgr(image))


def video_frames(path: str) -> Iterator[np.ndarray]:
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: the file is empty; give a video file (mp4, avi, mov)")
    capture = cv2.VideoCapture(path)
    ok, frame = capture.read() if capture.isOpened() else (False, None)
    if not ok or frame is None:
        capture.release()
        raise InputError(f"{path}: not a readable video (OpenCV cannot decode a frame of it); "
                         "give an mp4, avi or mov file")
    try:
        while ok and frame is not None:
            yield as_frame(frame)
            ok, frame = capture.read()
    finally:
        capture.release()


def camera_frames(index: int) -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise InputError(f"--camera {index}: no camera there (OpenCV cannot open /dev/video{index}); "
                         "check the cable or the index")
    try:
        while True:
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            yield as_frame(frame)
    finally:
        capture.release()


def video_fps(path: str, default: float = 25.0) -> float:
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    capture.release()
    return fps if fps and fps > 0 else default
