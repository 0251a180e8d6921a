"""Image -> model input, exactly as the model card says. Shared by the board runtime and the host converter."""
from __future__ import annotations

from typing import Optional, Sequence

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


CHANNEL_ORDERS = ("rgb", "bgr", "gray")
CHANNELS_OF = {"rgb": 3, "bgr": 3, "gray": 1}


def channel_order_for(channels: int, requested: Optional[str]) -> str:
    """The channel order a model with `channels` input channels is fed: gray for 1, rgb (default) or bgr for 3.

    Camera frames and aligned crops are 3-channel colour images: a model taking anything else (an RGBA or RGB-D
    model's 4 channels) cannot be fed by the runtime, so it is refused here, before anything is written."""
    if channels not in (1, 3):
        raise ValueError(f"the model's input has {channels} channels; edgepad feeds camera images as 1 channel (gray) "
                         "or 3 (rgb/bgr): export the model with a 1- or 3-channel input")
    if requested is None:
        return "gray" if channels == 1 else "rgb"
    if requested not in CHANNEL_ORDERS:
        raise ValueError(f"channel order '{requested}' is not one of {', '.join(CHANNEL_ORDERS)}")
    if CHANNELS_OF[requested] != channels:
        fits = "gray" if channels == 1 else "rgb or bgr"
        raise ValueError(f"channel order '{requested}' gives {CHANNELS_OF[requested]} channel(s) but the model's "
                         f"input has {channels}: use {fits}")
    return requested


def to_gray(image: np.ndarray) -> np.ndarray:
    """Any decoded image (gray, BGR, BGRA, 16-bit) as 8-bit single-channel grey (H, W)."""
    image = to_bgr(image)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


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


def normalize(image_bgr: np.ndarray, preprocess: dict, height: int, width: int) -> np.ndarray:
    """uint8 BGR image -> float32 (H, W, C) the model takes: resize, channel order, (x - mean) / std.

    Channel order `gray` gives (H, W, 1): OpenCV's BGR->grey weights (0.299 R + 0.587 G + 0.114 B)."""
    order = preprocess.get("channel_order", "rgb")
    image = to_gray(image_bgr) if order == "gray" else to_bgr(image_bgr)
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    if order == "rgb":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 2:
        image = image[..., None]
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
