"""`edgepad evaluate`: ISO/IEC 30107-3 PAD metrics of a model on aligned crops, at any stage of its conversion.

The same test crops through the Keras original, the ONNX file, the Caffe files and the emulated NPU show what
each conversion and the quantization cost in APCER / BPCER / ACER terms.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepad.errors import InputFileError, UsageError

from .board_scorer import BoardScorer, BoardTarget
from .crops import Crop, list_crops, resolve_split
from .metrics import PadMetrics, eer_threshold, pad_metrics
from .scorers import SCORERS, KerasScorer, Scorer, read_model_card

UNITS = ("frame", "video")
# Where the crops are scored: the Keras original, each conversion on this machine, and the deployed board.
STAGES = (*SCORERS, "board")


@dataclass
class EvaluateOptions:
    model: Path
    data: Path
    stage: str = "keras"
    threshold: float | None = None
    dev_data: Path | None = None
    unit: str = "frame"  # frame: every crop is a presentation; video: a video's mean score is one
    plot: Path | None = None
    board: BoardTarget | None = None  # for stage "board"


@dataclass
class EvaluateResult:
    stage: str
    model: Path
    data: Path
    unit: str
    threshold_source: str
    metrics: PadMetrics
    dev_eer: float | None
    scores: list[float] = field(repr=False, default_factory=list)
    types: list[str] = field(repr=False, default_factory=list)
    plot: Path | None = None

    def to_json(self) -> dict:
        return {"stage": self.stage, "model": str(self.model), "data": str(self.data), "unit": self.unit,
                "threshold_source": self.threshold_source, "dev_eer": self.dev_eer, **self.metrics.to_json(),
                "plot": str(self.plot) if self.plot else None}


def evaluate_model(options: EvaluateOptions, progress=None) -> EvaluateResult:
    """The Python API behind `edgepad evaluate`."""
    if options.stage not in STAGES:
        raise UsageError(f"--stage {options.stage}: choose from {', '.join(STAGES)}")
    if options.unit not in UNITS:
        raise UsageError(f"--unit {options.unit}: choose frame or video")
    if options.threshold is not None and options.dev_data is not None:
        raise UsageError("--threshold and --dev: give one; --dev fixes the threshold at the dev set's EER")
    if options.threshold is not None and not 0.0 <= options.threshold <= 1.0:
        raise UsageError(f"--threshold {options.threshold}: give a spoof probability between 0 and 1")
    if (Path(options.model) / "edgepad.json").is_file() and \
            read_model_card(options.model, options.stage).get("task") == "embedding":
        raise UsageError(f"MODEL {options.model}: an embedding model; evaluate it on face pairs with --pairs "
                         "pairs.txt (LFW layout) or an insightface .bin as DATA")
    test_crops = list_crops(resolve_split(options.data, "Test"))
    dev_crops = list_crops(resolve_split(options.dev_data, "Train", "--dev"), "--dev") if options.dev_data else []
    scorer = make_scorer(options.stage, options.model, options.board)

    dev_eer = None
    if dev_crops:
        dev_scores, dev_types = _presentations(dev_crops, scorer.spoof_scores([c.path for c in dev_crops], progress),
                                               options.unit)
        threshold, dev_eer = _eer(dev_scores, dev_types, options.dev_data)
        source = f"EER on {options.dev_data}"
    elif options.threshold is not None:
        threshold, source = options.threshold, "given"
    else:
        threshold, source = scorer.default_threshold, scorer.threshold_source

    scores, types = _presentations(test_crops, scorer.spoof_scores([c.path for c in test_crops], progress),
                                   options.unit)
    try:
        metrics = pad_metrics(scores, types, threshold)
    except ValueError as error:
        raise UsageError(f"DATA {options.data}: {error}") from None
    result = EvaluateResult(options.stage, options.model, options.data, options.unit, source, metrics, dev_eer,
                            list(map(float, scores)), list(types), options.plot)
    if options.plot is not None:
        from .plot import write_det_plot

        write_det_plot(options.plot, scores, types, metrics, f"{options.model.name} ({options.stage}), {options.unit}s")
    return result


def make_scorer(stage: str, model: Path, board_target: BoardTarget | None = None, custom_objects: Path | None = None,
                output_layer: str | None = None) -> Scorer:
    """The scorer of `model` at `stage`; `board_target` is where the board stage runs; `custom_objects` and
    `output_layer` load and cut a Keras .h5 as `edgepad convert` does (keras stage only)."""
    model = Path(model)
    if not model.exists():
        raise InputFileError(f"MODEL {model}: no such file or folder")
    if stage != "keras" and (custom_objects is not None or output_layer is not None):
        raise UsageError("--custom-objects and --output-layer are for the keras stage (a .h5); a convert output "
                         "folder is already cut")
    if stage == "board":
        return BoardScorer(model, board_target)
    if stage == "keras":
        return KerasScorer(model, custom_objects, output_layer)
    return SCORERS[stage](model)


def _eer(scores, types, dev_data) -> tuple[float, float]:
    try:
        return eer_threshold(scores, types)
    except ValueError as error:
        raise UsageError(f"--dev {dev_data}: {error}") from None


def _presentations(crops: list[Crop], scores: np.ndarray, unit: str) -> tuple[np.ndarray, list[str]]:
    """Scores and attack types per presentation: per crop, or each video's mean score."""
    if unit == "frame":
        return np.asarray(scores, np.float64), [c.attack_type for c in crops]
    by_video: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    types: dict[tuple[str, str, str], str] = {}
    for crop, score in zip(crops, scores, strict=True):
        key = (crop.label, crop.subject, crop.video)
        by_video[key].append(float(score))
        types[key] = crop.attack_type
    keys = sorted(by_video)
    return np.array([np.mean(by_video[k]) for k in keys]), [types[k] for k in keys]
