"""The board's command: faces in an image, a video or a camera -> one JSON line per frame on stdout.

    python3 vim3_infer.py --bundle DIR --image IMG | --video FILE | --camera N  [--backend ksnn|onnxruntime|opencv]
    python3 vim3_infer.py --bundle DIR --image IMG --bench 50 [--json]        per-stage p50/p95 ms and fps
    python3 vim3_infer.py --bundle DIR --parity INPUTS.npz --out OUTPUTS.npz  each model on given inputs
    python3 vim3_infer.py --bundle DIR --image IMG --gallery PEOPLE [--match-threshold T]   with models/embedding/:
        each face's L2-normalised "embedding" and its nearest enrolled person (PEOPLE/<name>/*.jpg)

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

from .backends import BACKENDS, NPU_BACKEND, BackendError, cpu_backend
from .backends.tflite_backend import DELEGATE_ENV
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
    parser.add_argument("--backend", choices=sorted(BACKENDS),
                        help="inference backend (default: ksnn for models with NPU files, else onnxruntime or opencv)")
    parser.add_argument("--min-face-size", type=float, default=None,
                        help="smallest face to find, in pixels (default: the one the bundle's PNet NBGs were "
                             "compiled for, else 40)")
    parser.add_argument("--detect-thresholds", default="0.6,0.7,0.7",
                        help="PNet,RNet,ONet face thresholds (default 0.6,0.7,0.7)")
    parser.add_argument("--threshold", type=float, help="spoof decision threshold (default: the classifier's card)")
    parser.add_argument("--gallery", metavar="DIR", help="enrolled people, one sub-folder of photos each: adds each "
                        "face's nearest person and distance (needs an embedding model in the bundle)")
    parser.add_argument("--match-threshold", type=float, help="with --gallery: a face is the nearest person when "
                        "closer than this (default: the embedding model's card)")
    parser.add_argument("--bench", type=int, metavar="N",
                        help="with --image: run N times, print per-stage p50/p95 and fps")
    parser.add_argument("--json", action="store_true", help="with --bench: print the figures as one JSON object")
    parser.add_argument("--no-track", action="store_true",
                        help="video/camera: detect on every frame instead of tracking")
    parser.add_argument("--redetect-every", type=int, default=15,
                        help="video/camera: frames between full detections (default 15)")
    parser.add_argument("--max-frames", type=int, help="video/camera: stop after this many frames")
    parser.add_argument("--threads", type=int, help="onnxruntime threads per model (default: one per core)")
    parser.add_argument("--delegate", help="with --backend tflite: Mesa's Teflon delegate (default: libteflon.so "
                        "in the usual library folders)")
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
    if args.delegate:
        os.environ[DELEGATE_ENV] = args.delegate
    if args.parity:
        if not args.out:
            parser.error("--parity needs --out OUTPUTS.npz")
        return run_parity(args.bundle, args.parity, args.out, args.backend)
    if args.image is None and args.video is None and args.camera is None:
        parser.error("give one of --image, --video, --camera or --parity")
    if args.bench is not None and (args.image is None or args.bench < 1):
        parser.error("--bench N needs --image and N >= 1")
    settings = DetectorSettings(min_face_size=args.min_face_size,
                                thresholds=_thresholds(args.detect_thresholds, parser))
    notes = Notes()
    pipeline = load_pipeline(args.bundle, args.backend, settings, args.threshold, warn=notes,
                             gallery_dir=args.gallery, match_threshold=args.match_threshold)
    if args.image is not None:
        image = read_image(args.image)
        if args.bench:
            figures = bench(pipeline, image, args.bench)
            notes.flush()
            print_bench(figures, args.json)
            return 0
        result = pipeline.process(image)
        notes.flush()
        _emit(dict(source=args.image, **result.to_json(), backends=pipeline.backend_names()))
        return 0
    frames = video_frames(args.video) if args.video is not None else camera_frames(args.camera)
    if args.no_track:
        process = pipeline.process
    else:
        process = FaceTracker(pipeline, TrackerSettings(redetect_every=args.redetect_every)).process
    for index, frame in enumerate(frames):
        if args.max_frames is not None and index >= args.max_frames:
            break
        result = process(frame)
        result.frame = index
        notes.flush()
        _emit(dict(result.to_json(), backends=pipeline.backend_names()) if index == 0 else result.to_json())
    return 0


def _thresholds(text: str, parser) -> tuple:
    try:
        return parse_thresholds(text)
    except ValueError as error:
        parser.error(str(error))


class Notes:
    """Notes (which backend runs what) held back until the first result, so a bad input stays one error line."""

    def __init__(self):
        self.pending: List[str] = []
        self.shown = False

    def __call__(self, message: str) -> None:
        self.pending.append(message)
        if self.shown:
            self.flush()

    def flush(self) -> None:
        self.shown = True
        for message in self.pending:
            print(f"note: {message}", file=sys.stderr)
        self.pending = []


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
    return {"repeats": repeats, "faces": faces, "backends": pipeline.backend_names(), "stages_ms": stages,
            "fps": round(1000.0 / mean_total, 2) if mean_total > 0 else None}


def print_bench(figures: dict, as_json: bool) -> None:
    if as_json:
        _emit(figures)
        return
    print(f"{figures['repeats']} runs, {figures['faces']} faces, backends {figures['backends']}")
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
    backends: Dict[str, str] = {}
    for model_name in inputs.files:
        folder = os.path.join(root, model_name)
        if not os.path.isdir(folder):
            raise InputError(f"--parity {inputs_path}: model '{model_name}' is not in {root}")
        model = load_any(folder, backend)
        backends[model_name] = model.name
        batch = np.asarray(inputs[model_name], np.float32)
        layout = model.card.targets.onnx.layout if model.card.targets.onnx is not None else "nhwc"
        rows = _rows_nhwc(batch, layout)
        results = [model.run(row) for row in rows]
        for name in model.output_names:
            outputs[f"{model_name}/{name}"] = np.concatenate([r[name] for r in results])
    directory = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(directory, exist_ok=True)
    partial = out_path + ".partial.npz"
    np.savez(partial, **outputs)
    os.replace(partial, out_path)  # a health check never reads half a file
    # "(backend X)": the NPU when any model ran there (the health check's tolerance for models with NPU files)
    used = NPU_BACKEND if NPU_BACKEND in backends.values() else (backend or cpu_backend())
    print(f"wrote {len(outputs)} outputs of {len(inputs.files)} models to {out_path} "
          f"(backend {used}); backends {json.dumps(backends, sort_keys=True)}", file=sys.stderr)
    return 0


def _rows_nhwc(batch: np.ndarray, layout: str) -> Iterable[np.ndarray]:
    if batch.ndim != 4:
        raise InputError(f"--parity: expected (N, H, W, C) or (N, C, H, W) inputs, got shape {list(batch.shape)}")
    if layout == "nchw":
        batch = batch.transpose(0, 2, 3, 1)
    return [np.ascontiguousarray(batch[i:i + 1]) for i in range(len(batch))]


if __name__ == "__main__":
    sys.exit(main())
