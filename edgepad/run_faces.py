"""The Python API behind `edgepad run`: the board runtime's pipeline on the host, on an image or a video.

Without a bundle the detector comes from the host's model cache (built from the mtcnn package on first use)
and faces get no live score unless a classifier folder is given.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepad.errors import InputFileError, UsageError


@dataclass
class RunOptions:
    source: Path
    bundle: Path | None = None
    classifier: Path | None = None  # an `edgepad convert` output (classifier or embedding model), without a bundle
    gallery: Path | None = None  # enrolled people (one sub-folder each), for an embedding model
    match_threshold: float | None = None
    backend: str | None = None
    min_face_size: float | None = None  # None: what the bundle's PNet NBGs were compiled for, else 40
    detect_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    threshold: float | None = None
    repeat: int = 1
    track: bool = True
    redetect_every: int = 15
    max_frames: int | None = None


@dataclass
class RunResult:
    source: Path
    kind: str  # "image" or "video"
    frames: list[dict]  # FrameResult.to_json() per frame
    timings_ms: dict[str, float]  # image: medians over --repeat runs; video: medians over frames
    backend: str
    has_classifier: bool
    has_embedder: bool = False
    image: np.ndarray | None = None  # the image, for --draw
    notes: list[str] = field(default_factory=list)
    backends: dict[str, str] = field(default_factory=dict)  # model -> the backend that ran it

    def to_json(self) -> dict:
        if self.kind == "image":
            return {"faces": self.frames[0]["faces"], "timings_ms": self.timings_ms, "backends": self.backends}
        return {"frames": self.frames, "timings_ms": self.timings_ms, "backends": self.backends}


def run_faces(options: RunOptions, steps=None) -> RunResult:
    from edgepad.runtime.backends import BackendError
    from edgepad.runtime.bundle import load_pipeline
    from edgepad.runtime.detector import DetectorSettings
    from edgepad.runtime.frames import InputError, is_image_file

    if options.repeat < 1:
        raise UsageError(f"--repeat {options.repeat}: give 1 or more")
    if options.bundle is not None and options.classifier is not None:
        raise UsageError("--bundle already holds a classifier; drop --classifier (or --bundle)")
    notes: list[str] = []
    settings = DetectorSettings(min_face_size=options.min_face_size, thresholds=options.detect_thresholds)
    try:
        detector_dir = None
        if options.bundle is None:
            from edgepad.convert.mtcnn_models import detector_models

            detector_dir = str(detector_models(steps=steps))
        pipeline = load_pipeline(str(options.bundle) if options.bundle else "", options.backend, settings,
                                 options.threshold, detector_dir=detector_dir,
                                 classifier_dir=str(options.classifier) if options.classifier else None,
                                 warn=notes.append, gallery_dir=str(options.gallery) if options.gallery else None,
                                 match_threshold=options.match_threshold)
        run_source = _run_image if is_image_file(options.source) else _run_video
        result = run_source(pipeline, options)
    except InputError as error:
        raise InputFileError(str(error)) from None
    except BackendError as error:
        raise UsageError(str(error)) from None
    result.backends = pipeline.backend_names()
    result.backend = ", ".join(dict.fromkeys(result.backends.values()))
    result.has_classifier = pipeline.classifier is not None
    result.has_embedder = pipeline.embedder is not None
    result.notes = notes
    return result


def _run_image(pipeline, options: RunOptions) -> RunResult:
    from edgepad.runtime.frames import read_image

    image = read_image(str(options.source))
    runs = [pipeline.process(image) for _ in range(options.repeat)]
    timings = _medians([r.timings_ms for r in runs])
    return RunResult(options.source, "image", [runs[-1].to_json()], timings, "", False, image=image)


def _run_video(pipeline, options: RunOptions) -> RunResult:
    from edgepad.runtime.frames import video_frames
    from edgepad.runtime.tracking import FaceTracker, TrackerSettings

    tracker = FaceTracker(pipeline, TrackerSettings(redetect_every=options.redetect_every)) if options.track else None
    frames, timings = [], []
    for index, frame in enumerate(video_frames(str(options.source))):
        if options.max_frames is not None and index >= options.max_frames:
            break
        result = tracker.process(frame) if tracker else pipeline.process(frame)
        result.frame = index
        frames.append(result.to_json())
        timings.append(result.timings_ms)
    return RunResult(options.source, "video", frames, _medians(timings), "", False)


def _medians(timings: list[dict]) -> dict[str, float]:
    stages = list(timings[0]) if timings else []
    return {stage: round(statistics.median(t.get(stage, 0.0) for t in timings), 3) for stage in stages}


def save_crops(image: np.ndarray, faces: list[dict], folder: Path, stem: str, size: int = 112) -> list[Path]:
    """Each face aligned to the ArcFace template, as FOLDER/<stem>_<i>.png: calibration images for --to vim3/tflite."""
    import cv2

    from edgepad.runtime.align import align_face

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, face in enumerate(faces):
        path = folder / f"{stem}_{i}.png"
        if not cv2.imwrite(str(path), align_face(image, np.asarray(face["landmarks"], np.float64), size)):
            raise UsageError(f"--save-crops {folder}: OpenCV cannot write {path.name} there; give a writable folder")
        written.append(path)
    return written


def draw_faces(image: np.ndarray, faces: list[dict], path: Path) -> None:
    """The image with each face's box, five landmarks, face score and live probability."""
    import cv2

    canvas = image.copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 500))
    for face in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face["box"])
        live = face.get("live")
        colour = (200, 200, 200) if live is None else ((0, 200, 0) if face.get("is_live") else (0, 0, 230))
        if face.get("identity"):
            colour = (200, 120, 0)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        for x, y in face["landmarks"]:
            cv2.circle(canvas, (int(round(x)), int(round(y))), thickness + 1, (0, 255, 255), -1)
        # the decision first: a face decided spoof at 0.36 live must not read as "live 0.36"
        label = f"face {face['score']:.2f}" if live is None else (
            f"{'live' if face.get('is_live') else 'spoof'} (live {live:.2f})")
        if face.get("nearest") is not None:
            label = f"{face['identity'] or 'unknown'} {face['distance']:.2f}"
        # Fit the label to its box (neighbouring faces' labels must not overlap) and keep it inside the image.
        scale = 0.4 * thickness
        (width, height), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        scale *= min(1.0, max(x2 - x1, 90) / width)
        text_thickness = max(1, int(round(scale * 3)))
        (width, height), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, text_thickness)
        x = min(max(x1, 0), max(canvas.shape[1] - width, 0))
        cv2.putText(canvas, label, (x, max(y1 - 4, height + 2)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour,
                    text_thickness)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), canvas):
        raise UsageError(f"--draw {path}: OpenCV cannot write it; use a .png or .jpg name in a writable folder")
