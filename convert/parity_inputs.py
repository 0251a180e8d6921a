"""Inputs for parity checks: structured synthetic images, and the user's sample images, both normalised by the card."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgepad.errors import InputFileError
from edgepad.runtime.frames import IMAGE_SUFFIXES, is_image_file
from edgepad.runtime.preprocess import normalize, normalize_pixels, pixels

SYNTHETIC_COUNT = 4


def synthetic_images(height: int, width: int, channels: int, count: int = SYNTHETIC_COUNT, seed: int = 0):
    """uint8 images with gradients, blobs and noise at varying contrast: not flat noise, which hides layout bugs."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    images = []
    for i in range(count):
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * xs / width + np.sin(angle) * ys / height)[..., None]
        cy, cx = rng.uniform(0.2, 0.8, 2) * (height, width)
        blob = np.exp(-(((ys - cy) / (height / 4)) ** 2 + ((xs - cx) / (width / 4)) ** 2))[..., None]
        tint = rng.uniform(0.3, 1.0, channels)
        noise = rng.normal(0, rng.uniform(5, 40), (height, width, channels))
        image = 128 + 90 * ramp * tint + 80 * blob * tint[::-1] + noise
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return images


def image_files(folder: str | Path, option: str) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"{option} {folder}: no such folder")
    files = sorted(p for p in folder.rglob("*") if is_image_file(p) and p.is_file())
    if not files:
        raise InputFileError(f"{option} {folder}: no .jpg or .png images in it (nor "
                             f"{', '.join(sorted(IMAGE_SUFFIXES - {'.jpg', '.jpeg', '.png'}))})")
    return files


def read_image(path: Path, option: str) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise InputFileError(f"{option}: {path} is not a readable image; remove it or replace it")
    return image


def parity_images(card: dict, sample_dir: str | Path | None, limit: int = 16) -> tuple[list[np.ndarray], list[str]]:
    """Normalised (H, W, C) float32 inputs and where each came from."""
    spec = card["input"]
    h, w, c = spec["height"], spec["width"], spec["channels"]
    inputs, sources = [], []
    for i, image in enumerate(synthetic_images(h, w, c)):
        inputs.append(normalize_for_card(image, card))
        sources.append(f"synthetic:{i}")
    if sample_dir is not None:
        for path in image_files(sample_dir, "--sample-images")[:limit]:
            inputs.append(normalize_for_card(read_image(path, "--sample-images"), card))
            sources.append(str(path))
    return inputs, sources


def normalize_for_card(image: np.ndarray, card: dict) -> np.ndarray:
    """A decoded image as the model takes it: the card's size, channel order (rgb, bgr, gray, rgba, bgra), mean, std."""
    spec = card["input"]
    return normalize(image, card["preprocess"], spec["height"], spec["width"])


def read_pixels(path: Path, card: dict, option: str) -> np.ndarray:
    """The image's pixel values as the NPU graph takes them (resized, the card's channel order), float32 (H, W, C)."""
    return image_pixels(read_image(path, option), card)


def image_pixels(image: np.ndarray, card: dict) -> np.ndarray:
    spec = card["input"]
    return pixels(image, card["preprocess"], spec["height"], spec["width"])


def normalized_pixels(image: np.ndarray, card: dict) -> np.ndarray:
    """image_pixels() -> the normalised input the float model takes: identical to normalize_for_card() of the image."""
    return normalize_pixels(image, card["preprocess"])
