"""The bench figure as a PNG drawn with OpenCV (already a dependency; matplotlib would be a new one for one chart).

Grouped bars per stage: p50 as the bar, p95 as a whisker above it; board and host side by side.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgepad.errors import InputFileError

WIDTH, HEIGHT = 900, 520
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 80, 30, 70, 80
COLORS = {"board": (60, 120, 230), "host": (180, 140, 40)}  # BGR
FONT = cv2.FONT_HERSHEY_SIMPLEX


def plot_bench(rows: list[dict], title: str, fps: dict[str, float | None], path: Path) -> Path:
    image = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    top_ms = max([v for r in rows for v in (r["board_p95"], r["host_p95"], r["board_p50"], r["host_p50"]) if v] + [1.0])
    top_ms = _nice_ceiling(top_ms)
    plot_w, plot_h = WIDTH - MARGIN_LEFT - MARGIN_RIGHT, HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    y_of = lambda ms: int(MARGIN_TOP + plot_h * (1 - ms / top_ms))  # noqa: E731

    for tick in np.linspace(0, top_ms, 6):
        y = y_of(tick)
        cv2.line(image, (MARGIN_LEFT, y), (WIDTH - MARGIN_RIGHT, y), (225, 225, 225), 1)
        cv2.putText(image, f"{tick:g}", (8, y + 5), FONT, 0.45, (80, 80, 80), 1, cv2.LINE_AA)
    cv2.putText(image, "ms", (8, MARGIN_TOP - 12), FONT, 0.45, (80, 80, 80), 1, cv2.LINE_AA)
    group_w = plot_w / max(len(rows), 1)
    bar_w = max(int(group_w * 0.3), 4)
    for i, row in enumerate(rows):
        center = int(MARGIN_LEFT + group_w * (i + 0.5))
        for side, offset in (("board", -bar_w), ("host", 0)):
            p50, p95 = row[f"{side}_p50"], row[f"{side}_p95"]
            if p50 is None:
                continue
            x0 = center + offset
            cv2.rectangle(image, (x0, y_of(p50)), (x0 + bar_w - 2, y_of(0)), COLORS[side], -1)
            if p95 is not None:
                xm = x0 + bar_w // 2
                cv2.line(image, (xm, y_of(p50)), (xm, y_of(p95)), (40, 40, 40), 1)
                cv2.line(image, (xm - 4, y_of(p95)), (xm + 4, y_of(p95)), (40, 40, 40), 1)
        (tw, _), _ = cv2.getTextSize(row["stage"], FONT, 0.5, 1)
        cv2.putText(image, row["stage"], (center - tw // 2, HEIGHT - MARGIN_BOTTOM + 22), FONT, 0.5, (0, 0, 0), 1,
                    cv2.LINE_AA)
    cv2.line(image, (MARGIN_LEFT, y_of(0)), (WIDTH - MARGIN_RIGHT, y_of(0)), (0, 0, 0), 1)
    cv2.putText(image, title, (MARGIN_LEFT, 30), FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    for j, side in enumerate(("board", "host")):
        x = MARGIN_LEFT + j * 380
        y = HEIGHT - 25
        cv2.rectangle(image, (x, y - 12), (x + 14, y + 2), COLORS[side], -1)
        label = f"{side}: p50 bar, p95 whisker, {fps.get(side) or '?'} fps"
        cv2.putText(image, label, (x + 20, y), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputFileError(f"--plot {path}: give a .png file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise InputFileError(f"--plot {path}: could not write it; check the folder exists and is writable")
    return path


def _nice_ceiling(value: float) -> float:
    magnitude = 10 ** np.floor(np.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)
