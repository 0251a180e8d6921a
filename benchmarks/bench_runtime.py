"""Times the runtime's face detection and tracking on the host and prints the figures with ratios.

usage: python benchmarks/bench_runtime.py [--repeat N] [--frames N] [--backend onnxruntime|opencv] [--threads N]

Baselines measured in the same run:
  * detection: the `mtcnn` 1.0.0 package (TensorFlow) on the same photos at the same minimum face size (20,
    its default; at 40 it finds nothing), and edgepad at 40 (the seed's setting) against it as well;
  * tracking: edgepad detecting on every frame of a video made from t1.jpg (a slow pan and zoom written with
    cv2.VideoWriter), against edgepad tracking with a full detection every 10 frames.
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "tests" / "fixtures" / "faces"
sys.path.insert(0, str(ROOT / "tests"))  # support.face_video: the same video the tests use


def median_ms(function, repeat: int) -> tuple[float, float]:
    """(wall, CPU) milliseconds, medians over `repeat` runs after a warm-up. CPU time (all threads of this
    process) is the steadier figure on a shared machine: other people's work does not count in it."""
    function()  # warm-up: graph building, allocations
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        wall.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.process_time() - start_cpu) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def detection(detector_dir: Path, backend: str, repeat: int) -> None:
    import cv2
    import numpy as np
    from mtcnn import MTCNN

    from edgepad.runtime.detector import DetectorSettings, load_detector

    package_detector = MTCNN()
    print(f"\nDetection: median of {repeat} runs, wall ms (CPU ms), edgepad on {backend}")
    print(f"{'image':<14} {'size':>9} {'mtcnn pkg @20':>15} {'edgepad @20':>15} {'ratio':>11} {'edgepad @40':>15} "
          f"{'ratio':>11} {'faces p/e20/e40':>15}")
    for name in ("astronaut.png", "t1.jpg"):
        image = cv2.imread(str(FACES / name))
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        at20 = load_detector(str(detector_dir), backend, DetectorSettings(min_face_size=20))
        at40 = load_detector(str(detector_dir), backend, DetectorSettings(min_face_size=40))
        package = median_ms(functools.partial(package_detector.detect_faces, rgb, min_face_size=20), repeat)
        ours20 = median_ms(functools.partial(at20.detect, image), repeat)
        ours40 = median_ms(functools.partial(at40.detect, image), repeat)
        found = (package_detector.detect_faces(rgb, min_face_size=20), at20.detect(image), at40.detect(image))
        counts = "/".join(str(len(faces)) for faces in found)
        size = f"{image.shape[1]}x{image.shape[0]}"
        print(f"{name:<14} {size:>9} {_ms(package):>15} {_ms(ours20):>15} {_ratio(package, ours20):>11} "
              f"{_ms(ours40):>15} {_ratio(package, ours40):>11} {counts:>15}")


def _ms(times) -> str:
    return f"{times[0]:.0f} ({times[1]:.0f})"


def _ratio(baseline, ours) -> str:
    return f"{baseline[0] / ours[0]:.1f}x ({baseline[1] / ours[1]:.1f}x)"


def tracking(detector_dir: Path, backend: str, frames: int) -> None:
    import cv2

    from edgepad.runtime.bundle import load_pipeline
    from edgepad.runtime.frames import video_frames
    from edgepad.runtime.tracking import FaceTracker, TrackerSettings

    from support.face_video import pan_zoom_frames, write_video

    with tempfile.TemporaryDirectory() as scratch:
        video = write_video(pan_zoom_frames(cv2.imread(str(FACES / "t1.jpg")), frames), Path(scratch) / "pan.avi")
        decoded = list(video_frames(str(video)))
    pipeline = load_pipeline("", backend, detector_dir=str(detector_dir))
    pipeline.process(decoded[0])  # warm-up

    start = time.perf_counter()
    per_frame = [pipeline.process(frame) for frame in decoded]
    per_frame_s = time.perf_counter() - start
    tracker = FaceTracker(pipeline, TrackerSettings(redetect_every=10))
    start = time.perf_counter()
    tracked = [tracker.process(frame) for frame in decoded]
    tracked_s = time.perf_counter() - start

    found = sum(len(r.faces) for r in per_frame)
    kept = sum(_matched(d.faces, t.faces) for d, t in zip(per_frame, tracked, strict=True))
    height, width = decoded[0].shape[:2]
    print(f"\nVideo: {len(decoded)} frames {width}x{height} (pan/zoom over t1.jpg), edgepad on {backend}")
    print(f"{'mode':<28} {'ms/frame':>9} {'fps':>7}")
    print(f"{'detect every frame':<28} {per_frame_s / len(decoded) * 1e3:>9.1f} {len(decoded) / per_frame_s:>7.1f}")
    print(f"{'track, detect every 10':<28} {tracked_s / len(decoded) * 1e3:>9.1f} {len(decoded) / tracked_s:>7.1f}")
    print(f"tracking is {per_frame_s / tracked_s:.1f}x faster; it keeps {kept}/{found} of the faces per-frame "
          f"detection finds (IoU >= 0.5), {len({f.track for r in tracked for f in r.faces})} track ids in all")


def _matched(detected, tracked) -> int:
    import numpy as np

    from edgepad.runtime.boxes import iou_matrix

    if not detected or not tracked:
        return 0
    overlaps = iou_matrix(np.array([f.box for f in detected]), np.array([f.box for f in tracked]))
    return int((overlaps.max(axis=1) >= 0.5).sum())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "opencv"])
    parser.add_argument("--threads", type=int, default=0,
                        help="threads for both edgepad (onnxruntime) and the package (TensorFlow); 0: library defaults")
    args = parser.parse_args()
    if args.threads:
        os.environ["EDGEPAD_THREADS"] = str(args.threads)
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    print(f"threads: {args.threads or 'library defaults'}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
          "cores "
          "(other work on the machine skews both sides)")

    from edgepad.convert.mtcnn_models import detector_models
    from edgepad.progress import Steps

    detector_dir = detector_models(steps=Steps())
    print(f"detector models: {detector_dir}")
    detection(detector_dir, args.backend, args.repeat)
    tracking(detector_dir, args.backend, args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
