"""Image -> model input, exactly as the model card says. Shared by the board runtime and the host converter."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np


def as_channel_vector(value, channels: int, option: str) -> np.ndarray:
    """A scalar or per-channel mean/std as a float32 vector of length `channels`."""
    values = np.atleast_1d(np.asarray(value, dtype=np.float32)).ravel()
    if values.size == 1:
        values = np.repeat(values, channels)
    if values.size != channels:
        raise ValueError(f"{option} has {values.size} values for a {channels}-channel input")
    return values


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Any decoded image (gray, BGR, BGRA, 16-bit) as 8-bit BGR."""
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(float(image.max()), 1.0))
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image


def pixels(image_bgr: np.ndarray, preprocess: dict, height: int, width: int) -> np.ndarray:
    """uint8 BGR image -> the pixel values (0..255) the model sees before normalisation, float32 (H, W, C):
    resized and in the card's channel order. What an NPU graph with the normalisation inside it takes."""
    image = to_bgr(image_bgr)
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    if preprocess.get("channel_order", "rgb") == "rgb":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image.astype(np.float32)


def normalize_pixels(image: np.ndarray, preprocess: dict) -> np.ndarray:
    """pixels() -> the normalised input: (x - mean) / std per channel."""
    channels = image.shape[2]
    mean = as_channel_vector(preprocess.get("mean", 127.5), channels, "mean")
    std = as_channel_vector(preprocess.get("std", 127.5), channels, "std")
    return ((np.asarray(image, np.float32) - mean) / std).astype(np.float32)


def normalize(image_bgr: np.ndarray, preprocess: dict, height: int, width: int) -> np.ndarray:
    """uint8 BGR image -> float32 (H, W, C) the model takes: resize, channel order, (x - mean) / std."""
    image = to_bgr(image_bgr)
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    if preprocess.get("channel_order", "rgb") == "rgb":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    channels = image.shape[2]
    mean = as_channel_vector(preprocess.get("mean", 127.5), channels, "mean")
    std = as_channel_vector(preprocess.get("std", 127.5), channels, "std")
    return ((image.astype(np.float32) - mean) / std).astype(np.float32)


def batch(hwc: np.ndarray, layout: str) -> np.ndarray:
    """(H, W, C) -> (1, H, W, C) or (1, C, H, W)."""
    x = hwc[None]
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if layout == "nchw" else x)


def batches(images: Sequence[np.ndarray], layout: str) -> list[np.ndarray]:
    return [batch(x, layout) for x in images]
