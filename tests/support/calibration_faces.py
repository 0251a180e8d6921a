"""Calibration images for the NPU tests: real faces from the fixture photos, aligned to 112x112, plus variants.

Faces are found by the `mtcnn` package (an independent detector, min_face_size=20: it finds 1 face in astronaut.png
and 7 in t1.jpg), aligned on the ArcFace template from their five landmarks, and varied the way real calibration
sets vary (mirror, exposure, contrast, slight rotation, blur, JPEG), so quantization ranges come from face statistics.
Cached under the test cache: detection takes a few seconds of TensorFlow.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .board_env import test_cache

CACHE_VERSION = "v1"
KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def face_crops(faces_dir: Path, size: int = 112) -> list[np.ndarray]:
    """Aligned BGR crops of every face mtcnn finds in the photos, and the already-aligned Tom Hanks crop."""
    from mtcnn import MTCNN

    from edgepad.runtime.align import align_face

    detector = MTCNN()
    crops = []
    for name in ("astronaut.png", "t1.jpg"):
        image = cv2.imread(str(faces_dir / name), cv2.IMREAD_COLOR)
        for face in detector.detect_faces(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), min_face_size=20):
            landmarks = np.array([face["keypoints"][k] for k in KEYPOINTS], np.float64)
            crops.append(align_face(image, landmarks, size))
    aligned = cv2.imread(str(faces_dir / "Tom_Hanks_54745.png"), cv2.IMREAD_COLOR)
    crops.append(cv2.resize(aligned, (size, size)) if aligned.shape[:2] != (size, size) else aligned)
    return crops


def variants(crop: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    h, w = crop.shape[:2]
    rotation = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-8, 8)), float(rng.uniform(0.95, 1.08)))
    exposure = np.clip(crop.astype(np.float32) * rng.uniform(0.6, 0.8) + rng.uniform(-10, 10), 0, 255)
    contrast = np.clip((crop.astype(np.float32) - 128) * rng.uniform(1.2, 1.5) + 128 + rng.uniform(0, 20), 0, 255)
    _, jpeg = cv2.imencode(".jpg", cv2.GaussianBlur(crop, (3, 3), 0.8), [cv2.IMWRITE_JPEG_QUALITY, 40])
    return [
        cv2.flip(crop, 1),
        exposure.astype(np.uint8),
        contrast.astype(np.uint8),
        cv2.warpAffine(crop, rotation, (w, h), borderMode=cv2.BORDER_REFLECT),
        cv2.imdecode(jpeg, cv2.IMREAD_COLOR),
    ]


def calibration_faces_dir(faces_dir: Path) -> Path:
    """A folder of 112x112 face PNGs (originals first, then variants), built once per cache."""
    folder = test_cache() / f"calibration_faces_{CACHE_VERSION}"
    marker = folder / ".complete"
    if marker.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    crops = face_crops(faces_dir)
    for i, crop in enumerate(crops):
        cv2.imwrite(str(folder / f"face{i:02d}_0.png"), crop)
    for i, crop in enumerate(crops):
        for j, variant in enumerate(variants(crop, rng), start=1):
            cv2.imwrite(str(folder / f"face{i:02d}_{j}.png"), variant)
    marker.write_text(f"{len(crops)} faces\n")
    return folder


def held_out_face_dirs(faces_dir: Path, evaluation_faces: int = 2) -> tuple[Path, Path]:
    """(calibration, evaluation) folders with different people in each: the last `evaluation_faces` faces (all their
    variants) judge a quantized model that was calibrated on the others, so it is judged on faces it never saw."""
    source = calibration_faces_dir(faces_dir)
    faces = sorted({p.name.split("_")[0] for p in source.glob("face*.png")})
    held_out = set(faces[-evaluation_faces:])
    root = test_cache() / f"held_out_faces_{CACHE_VERSION}_{evaluation_faces}"
    calibration, evaluation = root / "calibration", root / "evaluation"
    if not (root / ".complete").exists():
        for folder in (calibration, evaluation):
            folder.mkdir(parents=True, exist_ok=True)
        for path in sorted(source.glob("face*.png")):
            target = evaluation if path.name.split("_")[0] in held_out else calibration
            (target / path.name).write_bytes(path.read_bytes())
        (root / ".complete").write_text("ok\n")
    return calibration, evaluation
