"""A DET plot (APCER against BPCER on normal-deviate axes, as ISO/IEC 30107-3 shows error trade-offs) drawn with OpenCV.

matplotlib would be one more large dependency for one figure; OpenCV is already here.
"""
from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

import numpy as np

from .metrics import BONA_FIDE, PadMetrics, error_curve

SIZE = 640
MARGIN = 70
RATE_RANGE = (0.001, 0.999)
TICKS = (0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99)
COLOURS = [(200, 90, 30), (40, 40, 220), (40, 160, 40), (160, 40, 160), (0, 140, 220)]  # BGR


def _probit(rate: np.ndarray) -> np.ndarray:
    rate = np.clip(np.asarray(rate, dtype=np.float64), *RATE_RANGE)
    return np.array([NormalDist().inv_cdf(float(r)) for r in rate.ravel()]).reshape(rate.shape)


def _to_pixels(apcer: np.ndarray, bpcer: np.ndarray) -> np.ndarray:
    low, high = _probit(np.array(RATE_RANGE))
    span = SIZE - 2 * MARGIN
    x = MARGIN + (_probit(apcer) - low) / (high - low) * span
    y = SIZE - MARGIN - (_probit(bpcer) - low) / (high - low) * span
    return np.stack([x, y], axis=-1).round().astype(np.int32)


def write_det_plot(path: str | Path, scores, types, metrics: PadMetrics, title: str) -> None:
    """One curve per attack type and one for all attacks pooled, the operating point of `metrics` marked."""
    import cv2

    image = np.full((SIZE, SIZE, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for tick in TICKS:
        (x, _), = _to_pixels(np.array([tick]), np.array([RATE_RANGE[0]]))
        (_, y), = _to_pixels(np.array([RATE_RANGE[0]]), np.array([tick]))
        cv2.line(image, (int(x), MARGIN), (int(x), SIZE - MARGIN), (225, 225, 225), 1)
        cv2.line(image, (MARGIN, int(y)), (SIZE - MARGIN, int(y)), (225, 225, 225), 1)
        label = f"{tick * 100:g}%"
        cv2.putText(image, label, (int(x) - 14, SIZE - MARGIN + 18), font, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
        cv2.putText(image, label, (MARGIN - 48, int(y) + 4), font, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.rectangle(image, (MARGIN, MARGIN), (SIZE - MARGIN, SIZE - MARGIN), (0, 0, 0), 1)
    cv2.putText(image, "APCER", (SIZE // 2 - 25, SIZE - 20), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, "BPCER", (8, MARGIN - 12), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, title[:70], (MARGIN, 30), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)

    scores = np.asarray(scores, dtype=np.float64)
    types = np.asarray(types)
    bona = types == BONA_FIDE
    curves = [("all attacks", ~bona)] + [(t, types == t) for t in sorted(metrics.apcer_per_type)]
    for i, (name, attacks) in enumerate(curves):
        chosen = attacks | bona
        _, apcer, bpcer = error_curve(scores[chosen], attacks[chosen])
        colour = COLOURS[i % len(COLOURS)]
        cv2.polylines(image, [_to_pixels(apcer, bpcer)], False, colour, 2, cv2.LINE_AA)
        cv2.putText(image, name, (SIZE - MARGIN - 150, MARGIN + 20 + 18 * i), font, 0.5, colour, 1, cv2.LINE_AA)
    (px, py), = _to_pixels(np.array([metrics.apcer_max]), np.array([metrics.bpcer]))
    cv2.circle(image, (int(px), int(py)), 6, (0, 0, 0), 2, cv2.LINE_AA)
    cv2.putText(image, f"t={metrics.threshold:.3f} ACER={metrics.acer:.3f}", (MARGIN + 8, SIZE - MARGIN - 10),
                font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        from edgepad.errors import InputFileError

        raise InputFileError(f"--plot {path}: OpenCV could not write it; give a .png path in a writable folder")


FAR_TICKS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def write_roc_plot(path: str | Path, distances, same, metrics, title: str) -> None:
    """Face verification ROC: TAR against FAR (log axis, 1e-4 to 1), the TAR at FAR 1e-3 / 1e-2 marked."""
    import cv2

    from .verification import roc_curve

    far, tar = roc_curve(distances, same)
    low, high = np.log10(FAR_TICKS[0]), 0.0
    span = SIZE - 2 * MARGIN

    def pixels(far_values, tar_values):
        x = MARGIN + (np.log10(np.clip(far_values, FAR_TICKS[0], 1.0)) - low) / (high - low) * span
        y = SIZE - MARGIN - np.asarray(tar_values) * span
        return np.stack([x, y], axis=-1).round().astype(np.int32)

    image = np.full((SIZE, SIZE, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for tick in FAR_TICKS:
        (x, _), = pixels(np.array([tick]), np.array([0.0]))
        cv2.line(image, (int(x), MARGIN), (int(x), SIZE - MARGIN), (225, 225, 225), 1)
        cv2.putText(image, f"{tick:g}", (int(x) - 14, SIZE - MARGIN + 18), font, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        (_, y), = pixels(np.array([1.0]), np.array([tick]))
        cv2.line(image, (MARGIN, int(y)), (SIZE - MARGIN, int(y)), (225, 225, 225), 1)
        cv2.putText(image, f"{tick:g}", (MARGIN - 36, int(y) + 4), font, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.rectangle(image, (MARGIN, MARGIN), (SIZE - MARGIN, SIZE - MARGIN), (0, 0, 0), 1)
    cv2.putText(image, "FAR", (SIZE // 2 - 15, SIZE - 20), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, "TAR", (8, MARGIN - 12), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, title[:70], (MARGIN, 30), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    order = np.lexsort((tar, far))
    cv2.polylines(image, [pixels(far[order], tar[order])], False, COLOURS[0], 2, cv2.LINE_AA)
    for i, point in enumerate(metrics.tar_at_far):
        (px, py), = pixels(np.array([point["far_target"]]), np.array([point["tar"]]))
        cv2.circle(image, (int(px), int(py)), 6, COLOURS[1 + i], 2, cv2.LINE_AA)
        cv2.putText(image, f"TAR {point['tar']:.3f} @ FAR {point['far_target']:g}", (MARGIN + 8, MARGIN + 20 + 18 * i),
                    font, 0.5, COLOURS[1 + i], 1, cv2.LINE_AA)
    cv2.putText(image, f"acc {metrics.accuracy:.3f} (t={metrics.threshold:.3f}), AUC {metrics.auc:.3f}",
                (MARGIN + 8, SIZE - MARGIN - 10), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        from edgepad.errors import InputFileError

        raise InputFileError(f"--plot {path}: OpenCV could not write it; give a .png path in a writable folder")
