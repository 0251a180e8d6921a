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


# Channel orders a model card may give, and the channels each means. A camera frame (BGR, or gray, or BGRA) is
# converted to it; a 4-channel model gets an opaque alpha channel (255) unless the image has its own.
CHANNEL_ORDERS = {"rgb": 3, "bgr": 3, "gray": 1, "rgba": 4, "bgra": 4}


def default_channel_order(channels: int) -> str:
    """What a model with `channels` input channels most likely takes: RGB (Keras' default), gray, RGBA."""
    return {1: "gray", 3: "rgb", 4: "rgba"}.get(channels, "rgb")


def to_order(image: np.ndarray, order: str) -> np.ndarray:
    """Any decoded image as 8-bit in `order`: (H, W, 3) for rgb/bgr, (H, W, 1) for gray, (H, W, 4) for rgba/bgra."""
    if order in ("rgba", "bgra"):
        if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 4:
            bgra = image
        else:
            bgra = cv2.cvtColor(to_bgr(image), cv2.COLOR_BGR2BGRA)
        return cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA) if order == "rgba" else bgra
    bgr = to_bgr(image)
    if order == "gray":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[..., None]
    if order == "rgb":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if order == "bgr":
        return bgr
    raise ValueError(f"channel order '{order}': choose one of {', '.join(CHANNEL_ORDERS)}")


def pixels(image_bgr: np.ndarray, preprocess: dict, height: int, width: int) -> np.ndarray:
    """A decoded image -> the pixel values (0..255) the model sees before normalisation, float32 (H, W, C): in the
    card's channel order and resized. What an NPU graph with the normalisation inside it takes."""
    image = to_order(image_bgr, preprocess.get("channel_order", "rgb"))
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        if image.ndim == 2:  # OpenCV drops a single channel axis
            image = image[..., None]
    return image.astype(np.float32)


def normalize_pixels(image: np.ndarray, preprocess: dict) -> np.ndarray:
    """pixels() -> the normalised input: (x - mean) / std per channel."""
    channels = image.shape[2]
    mean = as_channel_vector(preprocess.get("mean", 127.5), channels, "mean")
    std = as_channel_vector(preprocess.get("std", 127.5), channels, "std")
    return ((np.asarray(image, np.float32) - mean) / std).astype(np.float32)


def normalize(image_bgr: np.ndarray, preprocess: dict, height: int, width: int) -> np.ndarray:
    """A decoded image (uint8 BGR, gray or BGRA) -> float32 (H, W, C) the model takes: resize, channel order
    (rgb, bgr, gray, rgba, bgra), (x - mean) / std."""
    return normalize_pixels(pixels(image_bgr, preprocess, height, width), preprocess)


def batch(hwc: np.ndarray, layout: str) -> np.ndarray:
    """(H, W, C) -> (1, H, W, C) or (1, C, H, W)."""
    x = hwc[None]
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if layout == "nchw" else x)


def batches(images: Sequence[np.ndarray], layout: str) -> list[np.ndarray]:
    return [batch(x, layout) for x in images]
