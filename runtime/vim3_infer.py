"""The board's command: faces in an image, a video or a camera -> one JSON line per frame on stdout.

    python3 vim3_infer.py --bundle DIR --image IMG | --video FILE | --camera N  [--backend ksnn|onnxruntime|opencv]
    python3 vim3_infer.py --bundle DIR --image IMG --bench 50 [--json]        per-stage p50/p95 ms and fps
    python3 vim3_infer.py --bundle DIR --parity INPUTS.npz --out OUTPUTS.npz  each model on given inputs

Runs as a plain script on Python 3.8+ with numpy, OpenCV and onnxruntime or KSNN. Exit status: 0 done,
1 an input or model that cannot be used (one line on stderr), 2 bad options.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:
    # Run as `python3 vim3_infer.py`: make this folder importable as a package so the relative imports work.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.dirname(_here))
    __package__ = os.path.basename(_here)
    __import__(__package__)

import argparse
import json
from typing import Dict, Iterable, List, Optional

import numpy as np

from .backends import BACKENDS, BackendError, default_backend
from .bundle import load_any, load_pipeline, models_root
from .detector import DetectorSettings, parse_thresholds
from .frames import InputError, camera_frames, read_image, video_frames
from .tracking import FaceTracker, TrackerSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vim3_infer.py", description="Detect, align and classify faces (live/spoof) with an edgepad bundle.")
    parser.add_argument("--bundle", required=True, help="bundle folder (models/ with pnet, rnet, onet, classifier)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--image", help="an image file")
    source.add_argument("--video", help="a video file: faces are tracked between detections")
    source.add_argument("--camera", type=int, help="a camera index (/dev/videoN)")
    source.add_argument("--parity", metavar="INPUTS.npz", help="run each model named in INPUTS.npz (see --out)")
    parser.add_argument("--out", metavar="OUTPUTS.npz", help="with --parity: where to write <model>/<output> arrays")
    parser.add_argument("--backend", choices=sorted(BACKENDS), help="inference backend (default: onnxruntime where installed)")
    parser.add_argument("--min-face-size", type=float, default=40.0, help="smallest face to find, in pixels (default 40)")
    parser.add_argument("--detect-thresholds", default="0.6,0.7,0.7", help="PNet,RNet,ONet face thresholds (default 0.6,0.7,0.7)")
    parser.add_argument("--threshold", type=float, help="spoof decision threshold (default: the classifier's card)")
    parser.add_argument("--bench", type=int, metavar="N", help="with --image: run N times, print per-stage p50/p95 and fps")
    parser.add_argument("--json", action="store_true", help="with --bench: print the figures as one JSON object")
    parser.add_argument("--no-track", action="store_true", help="video/camera: detect on every frame instead of tracking")
    parser.add_argument("--redetect-every", type=int, default=10, help="video/camera: frames between full detections (default 10)")
    parser.add_argument("--max-frames", type=int, help="video/camera: stop after this many frames")
    parser.add_argument("--threads", type=int, help="onnxruntime threads per model (default: one per core)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args, parser)
    except (InputError, BackendError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def run(args, parser: argparse.ArgumentParser) -> int:
    if args.threads:
        os.environ["EDGEPAD_THREADS"] = str(args.threads)
    if args.parity:
        if not args.out:
            parser.error("--parity needs --out OUTPUTS.npz")
        return run_parity(args.bundle, args.parity, args.out, args.backend)
    if args.image is None and args.video is None and args.camera is None:
        parser.error("give one of --image, --video, --camera or --parity")
    if args.bench is not None and (args.image is None or args.bench < 1):
        parser.error("--bench N needs --image and N >= 1")
    settings = DetectorSettings(min_face_size=args.min_face_size, thresholds=_thresholds(args.detect_thresholds, parser))
    pipeline = load_pipeline(args.bundle, args.backend, settings, args.threshold)
    if args.image is not None:
        image = read_image(args.image)
        if args.bench:
            print_bench(bench(pipeline, image, args.bench), args.json)
            return 0
        _emit(dict(source=args.image, **pipeline.process(image).to_json()))
        return 0
    frames = video_frames(args.video) if args.video is not None else camera_frames(args.camera)
    process = pipeline.process if args.no_track else FaceTracker(pipeline, TrackerSettings(redetect_every=args.redetect_every)).process
    for index, frame in enumerate(frames):
        if args.max_frames is not None and index >= args.max_frames:
            break
        result = process(frame)
        result.frame = index
        _emit(result.to_json())
    return 0


def _thresholds(text: str, parser) -> tuple:
    try:
        return parse_thresholds(text)
    except ValueError as error:
        parser.error(str(error))


def _emit(data: dict) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


# -- bench ------------------------------------------------------------------------------------------------------
def bench(pipeline, image: np.ndarray, repeats: int) -> dict:
    """Per-stage latency over `repeats` runs after one warm-up: p50, p95 (ms) and frames per second."""
    pipeline.process(image)
    samples: Dict[str, List[float]] = {}
    faces = 0
    for _ in range(repeats):
        result = pipeline.process(image)
        faces = len(result.faces)
        for stage, ms in result.timings_ms.items():
            samples.setdefault(stage, []).append(ms)
    stages = {stage: {"p50": round(float(np.percentile(v, 50)), 3), "p95": round(float(np.percentile(v, 95)), 3)}
              for stage, v in samples.items()}
    mean_total = float(np.mean(samples["total"]))
    return {"repeats": repeats, "faces": faces, "backend": _backend_names(pipeline), "stages_ms": stages,
            "fps": round(1000.0 / mean_total, 2) if mean_total > 0 else None}


def _backend_names(pipeline) -> Dict[str, str]:
    names = {"pnet": pipeline.detector.pnet.name, "rnet": pipeline.detector.rnet.name, "onet": pipeline.detector.onet.name}
    if pipeline.classifier is not None:
        names["classifier"] = pipeline.classifier.model.name
    return names


def print_bench(figures: dict, as_json: bool) -> None:
    if as_json:
        _emit(figures)
        return
    print(f"{figures['repeats']} runs, {figures['faces']} faces, backends {figures['backend']}")
    print(f"{'stage':<10} {'p50 ms':>9} {'p95 ms':>9}")
    for stage, values in figures["stages_ms"].items():
        print(f"{stage:<10} {values['p50']:>9.2f} {values['p95']:>9.2f}")
    print(f"fps {figures['fps']}")


# -- parity -----------------------------------------------------------------------------------------------------
def run_parity(bundle_dir: str, inputs_path: str, out_path: str, backend: Optional[str]) -> int:
    """Each model named in INPUTS.npz on its inputs (in its onnx target's layout), one row at a time."""
    if not os.path.isfile(inputs_path):
        raise InputError(f"--parity {inputs_path}: no such file")
    root = models_root(bundle_dir)
    try:
        inputs = np.load(inputs_path)
    except (OSError, ValueError) as error:
        raise InputError(f"--parity {inputs_path}: not a readable .npz ({error})") from None
    outputs: Dict[str, np.ndarray] = {}
    for model_name in inputs.files:
        folder = os.path.join(root, model_name)
        if not os.path.isdir(folder):
            raise InputError(f"--parity {inputs_path}: model '{model_name}' is not in {root}")
        model = load_any(folder, backend)
        batch = np.asarray(inputs[model_name], np.float32)
        layout = model.card.get("targets", {}).get("onnx", {}).get("layout", "nhwc")
        rows = _rows_nhwc(batch, layout)
        results = [model.run(row) for row in rows]
        for name in model.output_names:
            outputs[f"{model_name}/{name}"] = np.concatenate([r[name] for r in results])
    directory = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(directory, exist_ok=True)
    partial = out_path + ".partial.npz"
    np.savez(partial, **outputs)
    os.replace(partial, out_path)  # a health check never reads half a file
    print(f"wrote {len(outputs)} outputs of {len(inputs.files)} models to {out_path} "
          f"(backend {backend or default_backend()})", file=sys.stderr)
    return 0


def _rows_nhwc(batch: np.ndarray, layout: str) -> Iterable[np.ndarray]:
    if batch.ndim != 4:
        raise InputError(f"--parity: expected (N, H, W, C) or (N, C, H, W) inputs, got shape {list(batch.shape)}")
    if layout == "nchw":
        batch = batch.transpose(0, 2, 3, 1)
    return [np.ascontiguousarray(batch[i:i + 1]) for i in range(len(batch))]


if __name__ == "__main__":
    sys.exit(main())
