"""Times the runtime's face detection and tracking on the host and prints the figures with ratios.

usage: python benchmarks/bench_runtime.py [--repeat N] [--frames N] [--backend onnxruntime|opencv] [--threads N]

Baselines measured in the same run:
  * detection: the `mtcnn` 1.0.0 package (TensorFlow) on the same photos at the same minimum face size (20,
    its default; at 40 it finds nothing), and edgepad at 40 (the seed's setting) against it as well;
  * tracking: edgepad detecting on every frame of a video made from t1.jpg (a slow pan and zoom written with
    cv2.VideoWriter, played forwards and backwards), against edgepad tracking with a full detection every 10
    frames (with and without the edge watch), with its defaults (every 15, edge watch), and detecting only on
    the first frame (with and without the watch: faces entering later are found by the watch alone); recall
    against where the photo's faces truly are in each frame (the package's boxes on the photo, moved as the frame
    was cut), and identity switches.
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
    import numpy as np
    from mtcnn import MTCNN

    from edgepad.runtime.bundle import load_pipeline
    from edgepad.runtime.frames import video_frames
    from edgepad.runtime.tracking import FaceTracker, TrackerSettings

    from support.face_video import pan_zoom_frames, true_faces, write_video

    photo = cv2.imread(str(FACES / "t1.jpg"))
    # Where the faces are in every frame: the package's boxes on the photo, moved as each frame was cut.
    boxes = [f["box"] for f in MTCNN().detect_faces(np.ascontiguousarray(photo[:, :, ::-1]), box_format="xyxy",
                                                    min_face_size=20)]
    truth = true_faces([b for b in boxes if min(b[2] - b[0], b[3] - b[1]) >= 40], photo.shape, frames)
    with tempfile.TemporaryDirectory() as scratch:
        video = write_video(pan_zoom_frames(photo, frames), Path(scratch) / "pan.avi")
        decoded = list(video_frames(str(video)))
    pipeline = load_pipeline("", backend, detector_dir=str(detector_dir))
    pipeline.process(decoded[0])  # warm-up
    height, width = decoded[0].shape[:2]
    print(f"\nVideo: {len(decoded)} frames {width}x{height} (pan/zoom over t1.jpg, then backwards), "
          f"edgepad on {backend}; ms/frame = mean of timings_ms.total (CPU ms of the process)")
    print(f"{'mode':<42} {'ms/frame':>16} {'speed-up':>13} {'recall':>8} {'id switches':>12} {'vs per-frame':>13}")
    for direction, clip, faces in (("forwards", decoded, truth), ("backwards", decoded[::-1], truth[::-1])):
        modes = [("detect every frame", pipeline.process),
                 ("track (defaults)", FaceTracker(pipeline).process),
                 ("track, detect every 10", FaceTracker(pipeline, TrackerSettings(redetect_every=10)).process),
                 ("track, 10, no edge watch",
                  FaceTracker(pipeline, TrackerSettings(redetect_every=10, watch=False)).process),
                 # one detection on frame 0: only the watch brings in the faces entering later
                 ("track, detect once", FaceTracker(pipeline, TrackerSettings(redetect_every=10**6)).process),
                 ("track, detect once, no watch",
                  FaceTracker(pipeline, TrackerSettings(redetect_every=10**6, watch=False)).process)]
        base = None
        for name, process in modes:
            start_cpu = time.process_time()
            results = [process(frame) for frame in clip]
            cpu = (time.process_time() - start_cpu) * 1e3 / len(clip)
            wall = sum(r.timings_ms["total"] for r in results) / len(clip)
            base = base or (results, wall, cpu)
            recall, switches = _truth_recall(results, faces)
            kept = sum(_matched(d.faces, t.faces) for d, t in zip(base[0], results, strict=True))
            found = sum(len(r.faces) for r in base[0])
            speed_up = f"{base[1] / wall:>5.1f}x ({base[2] / cpu:>4.1f}x)"
            print(f"{direction + ': ' + name:<42} {wall:>7.1f} ({cpu:>5.1f}) {speed_up} "
                  f"{recall:>8.3f} {switches:>12} {kept:>6}/{found:<6}")


def _truth_recall(results, truth) -> tuple:
    """(share of the true faces wholly in view that a face of the result overlaps with IoU >= 0.5,
    times a true face's track id changed while it stayed in view)."""
    import numpy as np

    from edgepad.runtime.boxes import iou_matrix

    hits = total = switches = 0
    identity = {}
    for result, faces in zip(results, truth, strict=True):
        for index, box in faces.items():
            total += 1
            if not result.faces:
                continue
            overlaps = iou_matrix(np.array([box]), np.array([f.box for f in result.faces]))[0]
            best = int(overlaps.argmax())
            if overlaps[best] >= 0.5:
                hits += 1
                track = result.faces[best].track
                if track is not None and identity.setdefault(index, track) != track:
                    switches += 1
                    identity[index] = track
    return hits / max(total, 1), switches


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
    parser.add_argument("--only", choices=["detection", "tracking"], help="run one of the two parts")
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
    if args.only != "tracking":
        detection(detector_dir, args.backend, args.repeat)
    if args.only != "detection":
        tracking(detector_dir, args.backend, args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
