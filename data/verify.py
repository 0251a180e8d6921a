"""`edgepad evaluate MODEL DATASET --pairs pairs.txt`: face verification of an embedding model, on any stage.

Each image's face is found with the runtime's MTCNN and aligned to the ArcFace template (the largest face;
`--aligned` takes images as aligned crops already, as insightface's .bin sets are), the model embeds it, the
embedding is L2-normalised and each pair's distance is Euclidean on the unit sphere (or cosine distance).
The same pairs through keras, onnx, caffe, vim3-emulated and the board show what each conversion costs in verification
terms. A pair with an image where no face is found gets a null distance and counts as an error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepad.errors import InputFileError, UsageError

from .board_scorer import BoardTarget
from .evaluate import STAGES, make_scorer
from .pairs import PairSet, read_pairs
from .scorers import read_model_card
from .verification import VerificationMetrics, verification_metrics

EMBEDDING_NOTE = ("embeddings are L2-normalised; distance = {metric} between unit vectors; a pair is the same "
                  "person when its distance < threshold")


@dataclass
class VerifyOptions:
    model: Path
    data: Path
    pairs: Path | None = None
    stage: str = "keras"
    aligned: bool = False
    folds: int = 10
    metric: str = "euclidean"
    plot: Path | None = None
    custom_objects: Path | None = None  # keras stage: load and cut the .h5 as `edgepad convert` does
    output_layer: str | None = None
    min_face_size: int = 40
    detector_models: str | None = None  # the MTCNN nets (default: edgepad's cache, built on first use)
    board: BoardTarget | None = None  # for stage "board"


@dataclass
class VerifyResult:
    stage: str
    model: Path
    data: Path
    pairs_source: str
    aligned: str
    metric: str
    pairs: list
    distances: list[float | None]
    metrics: VerificationMetrics
    embedding_size: int
    faces_not_found: list[str] = field(default_factory=list)
    plot: Path | None = None

    def to_json(self) -> dict:
        return {"stage": self.stage, "model": str(self.model), "data": str(self.data), "pairs_file": self.pairs_source,
                "alignment": self.aligned, "metric": self.metric, "embedding_size": self.embedding_size,
                "note": EMBEDDING_NOTE.format(metric=self.metric), **self.metrics.to_json(),
                "faces_not_found": self.faces_not_found, "pairs": [p.to_json() for p in self.pairs],
                "distances": self.distances, "plot": str(self.plot) if self.plot else None}


def verify_model(options: VerifyOptions, progress=None) -> VerifyResult:
    """The Python API behind `edgepad evaluate ... --pairs`."""
    from edgepad.runtime.embedder import METRICS, distances, l2_normalize

    if options.stage not in STAGES:
        raise UsageError(f"--stage {options.stage}: face verification runs on {', '.join(STAGES)}")
    if options.metric not in METRICS:
        raise UsageError(f"--metric {options.metric}: choose euclidean or cosine")
    pair_set = read_pairs(options.data, options.pairs)
    if options.folds < 2 or options.folds > len(pair_set.pairs):
        raise UsageError(f"--folds {options.folds}: give 2 to {len(pair_set.pairs)} (the number of pairs)")
    _check_embedding_model(options)
    scorer = make_scorer(options.stage, options.model, options.board, custom_objects=options.custom_objects,
                         output_layer=options.output_layer)
    aligned = options.aligned or pair_set.aligned
    crops = _faces(pair_set, aligned, scorer.height, options, progress)
    keys = [k for k, crop in crops.items() if crop is not None]
    embeddings = l2_normalize(scorer.outputs([crops[k] for k in keys])) if keys else np.zeros((0, 0))
    row = {k: i for i, k in enumerate(keys)}
    pair_distances: list[float | None] = []
    for pair in pair_set.pairs:
        if pair.a in row and pair.b in row:
            a, b = embeddings[row[pair.a]][None], embeddings[row[pair.b]][None]
            pair_distances.append(float(distances(a, b, options.metric)[0, 0]))
        else:
            pair_distances.append(None)
    try:
        metrics = verification_metrics(pair_distances, [p.same for p in pair_set.pairs], options.folds)
    except ValueError as error:
        raise UsageError(f"--pairs {pair_set.source}: {error}") from None
    how = ("given: the images are aligned crops" + (" (insightface .bin)" if pair_set.aligned else "")) if aligned \
        else "MTCNN (largest face) + ArcFace five-point template"
    result = VerifyResult(options.stage, options.model, options.data, pair_set.source, how, options.metric,
                          pair_set.pairs, pair_distances, metrics, int(embeddings.shape[1]) if keys else 0,
                          [k for k, crop in crops.items() if crop is None], options.plot)
    if options.plot is not None:
        from .plot import write_roc_plot

        write_roc_plot(options.plot, pair_distances, [p.same for p in pair_set.pairs], metrics,
                       f"{options.model.name} ({options.stage}), {len(pair_set.pairs)} pairs")
    return result


def _check_embedding_model(options: VerifyOptions) -> None:
    """A convert output folder must hold an embedding model (a .h5 for --stage keras has no card)."""
    if options.stage == "keras" or not Path(options.model).is_dir():
        return
    task = read_model_card(options.model, options.stage).get("task", "classifier")
    if task != "embedding":
        raise UsageError(f"MODEL {options.model}: its card says task '{task}'; --pairs evaluates an embedding "
                         "model (convert it cut at its embedding layer with --output-layer)")


def _faces(pair_set: PairSet, aligned: bool, size: int, options: VerifyOptions, progress) -> dict:
    """Image key -> the aligned face crop (BGR), or None when no face is found."""
    detector = None
    if not aligned:
        from .faces import DetectorSettings, make_detector

        detector = make_detector(DetectorSettings(min_face_size=options.min_face_size), options.detector_models)
    from .faces import align_face, largest_face

    crops: dict = {}
    keys = pair_set.keys()
    for done, key in enumerate(keys, start=1):
        image = pair_set.load(key)
        if image is None:
            raise InputFileError(f"{key}: OpenCV cannot read this image; replace it (DATASET {options.data})")
        if detector is None:
            crops[key] = image
        else:
            face = largest_face(detector.detect(image))
            crops[key] = None if face is None else align_face(image, face.landmarks, size)
        if progress:
            progress(done, len(keys))
    return crops
