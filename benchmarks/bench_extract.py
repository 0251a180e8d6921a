"""Extraction speed: frames per second of `edgepad extract` with 1 and with 2 worker processes, same data, same run.

The data is the tests' tiny SiW-layout set made from real face photos (160x160 videos), scaled up with more
frames per video. Each setting extracts into a fresh folder; the figure includes worker start-up, as a user
would see it.
Usage: .venv/bin/python benchmarks/bench_extract.py [--frames 60] [--subjects 8] [--frame-size 160 --face-width 72]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from edgepad.data.extract import ExtractOptions, extract_dataset  # noqa: E402
from edgepad.data.faces import prepare_detector_models  # noqa: E402

from support.siw_dataset import build_siw_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="frames per video")
    parser.add_argument("--subjects", type=int, default=8, help="subjects (3 videos each)")
    parser.add_argument("--frame-size", type=int, default=160, help="square frame side in px")
    parser.add_argument("--face-width", type=int, default=72, help="face width in px inside the frame")
    args = parser.parse_args()

    prepare_detector_models()  # the converted MTCNN cache, built before timing
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dataset = build_siw_dataset(tmp / "siw", ROOT / "tests" / "fixtures" / "faces", args.frames, args.subjects,
                                    args.frame_size, args.face_width)
        print(f"{len(dataset.videos)} videos x {args.frames} frames of {args.frame_size}x{args.frame_size}, "
              f"faces {args.face_width} px wide (one video unreadable)")
        figures = {}
        for workers in (1, 2):
            started = time.perf_counter()
            result = extract_dataset(ExtractOptions(root=dataset.root, out=tmp / f"out{workers}", workers=workers))
            wall = time.perf_counter() - started
            frames = result.totals()["frames"]
            figures[workers] = frames / wall
            print(f"workers={workers}: {frames} frames, {result.totals()['faces_aligned']} faces aligned in "
                  f"{wall:.2f} s -> {figures[workers]:.1f} frames/s")
        print(f"2 workers vs 1: x{figures[2] / figures[1]:.2f}")


if __name__ == "__main__":
    main()
