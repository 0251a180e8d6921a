"""Spoof scores of crops from a model at one stage of its way to the board: `keras` (the .h5 as trained), `onnx`,
`caffe`, `vim3-emulated` (an `edgepad convert` output folder run through the board runtime's backends); the `board`
stage (the deployed release on a real board, over SSH) is board_scorer.py, and evaluate.py holds the list of stages.

Every scorer reads images from disk, preprocesses them as the model card says (the keras scorer uses
convert's defaults, the same the card records) and returns the spoof probability per image.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgepad.errors import InputFileError, UsageError

# The preprocessing `edgepad train` trains with and `edgepad convert` records by default.
DEFAULT_PREPROCESS = {"mean": [127.5] * 3, "std": [127.5] * 3, "channel_order": "rgb", "resize": "bilinear"}
BATCH = 64


class Scorer:
    """Spoof probability per image path."""

    default_threshold = 0.5
    threshold_source = "default 0.5"

    def __init__(self, preprocess: dict, height: int, width: int, spoof_index: int, head: str | None = None):
        self.preprocess, self.height, self.width, self.spoof_index = preprocess, height, width, spoof_index
        self.head = head  # the card's head (softmax, sigmoid, logits); None: the output is the probabilities

    def spoof_of(self, outputs: np.ndarray, count: int) -> np.ndarray:
        """P(spoof) per row of the classifier's output, as the runtime computes P(live) from the card's head."""
        from edgepad.runtime.classifier import live_probability

        rows = np.asarray(outputs, np.float64).reshape(count, -1)
        if self.head is None:
            return rows[:, self.spoof_index]
        return 1.0 - live_probability(rows, self.head, 1 - self.spoof_index)

    def spoof_scores(self, paths: Sequence[Path], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        scores = []
        for start in range(0, len(paths), BATCH):
            batch = np.stack([self._load(p) for p in paths[start:start + BATCH]])
            probabilities = self._run(batch)
            scores.extend(self.spoof_of(probabilities, len(batch)))
            if progress:
                progress(min(start + BATCH, len(paths)), len(paths))
        return np.array(scores)

    def outputs(self, images_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """The model's raw output per image (already cut and aligned as the model takes it): (N, values)."""
        from edgepad.runtime.preprocess import normalize

        rows = []
        for start in range(0, len(images_bgr), BATCH):
            batch = np.stack([normalize(image, self.preprocess, self.height, self.width)
                              for image in images_bgr[start:start + BATCH]])
            rows.append(np.asarray(self._run(batch), np.float64).reshape(len(batch), -1))
        return np.concatenate(rows) if rows else np.zeros((0, 0))

    def _load(self, path: Path) -> np.ndarray:
        import cv2

        from edgepad.runtime.preprocess import normalize

        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise InputFileError(f"{path}: OpenCV cannot read this image; delete it or extract the video again")
        return normalize(image, self.preprocess, self.height, self.width)

    def _run(self, batch: np.ndarray) -> np.ndarray:  # (N, H, W, C) -> (N, classes)
        raise NotImplementedError


class KerasScorer(Scorer):
    def __init__(self, model_path: Path, custom_objects: Path | None = None, output_layer: str | None = None):
        from edgepad.convert.onnx.keras_loading import (
            cut_at_layer,
            inspect_h5,
            load_custom_objects,
            load_keras_model,
            prefer_legacy_keras_for,
        )

        if model_path.is_dir():
            raise UsageError(f"--stage keras: {model_path} is a folder; give the .h5 file (a convert output "
                             "folder runs with --stage onnx, caffe or vim3-emulated)")
        info = inspect_h5(model_path)
        prefer_legacy_keras_for(info)
        self.model = cut_at_layer(load_keras_model(info, load_custom_objects(custom_objects)), info, output_layer)
        _, height, width, _ = self.model.inputs[0].shape
        super().__init__(DEFAULT_PREPROCESS, int(height), int(width), spoof_index=1)

    def _run(self, batch):
        return np.asarray(self.model(batch, training=False))


class RuntimeScorer(Scorer):
    """A convert output folder through the board runtime's backend registry (runtime/backends)."""

    def __init__(self, model_dir: Path, runtime_backend: str, requires: str, name: str, **backend_options):
        card = read_model_card(model_dir, name)
        if requires not in card.get("targets", {}):
            raise UsageError(f"--stage {name}: {model_dir} has no {requires} model; convert with "
                             f"`edgepad convert MODEL.h5 -o {model_dir} --to {requires} --force`")
        from edgepad.runtime.backends import load_model

        self.model = load_model(str(model_dir), runtime_backend, **backend_options)
        self.threshold_source = f"model card {card.get('threshold', 0.5)}"
        self.default_threshold = float(card.get("threshold", 0.5))
        super().__init__(card.get("preprocess", DEFAULT_PREPROCESS), int(card["input"]["height"]),
                         int(card["input"]["width"]), spoof_index(card), card.get("head"))

    def _run(self, batch):
        outputs = self.model.run(batch.astype(np.float32))
        return next(iter(outputs.values()))


class OnnxScorer(Scorer):
    """model.onnx with onnxruntime, preprocessing and layout from the model card."""

    def __init__(self, model_dir: Path):
        from edgepad.convert.onnx.onnx_runner import onnx_session

        card = read_model_card(model_dir, "onnx")
        entry = card.get("targets", {}).get("onnx")
        if not entry:
            raise InputFileError(f"{model_dir}/edgepad.json: no onnx target; run `edgepad convert` again")
        self.session = onnx_session(str(model_dir / entry["file"]))
        self.input_name = self.session.get_inputs()[0].name
        self.layout = entry.get("layout", "nhwc")
        self.default_threshold = float(card.get("threshold", 0.5))
        self.threshold_source = f"model card {self.default_threshold}"
        super().__init__(card.get("preprocess", DEFAULT_PREPROCESS), int(card["input"]["height"]),
                         int(card["input"]["width"]), spoof_index(card), card.get("head"))

    def _run(self, batch):
        rows = batch.transpose(0, 3, 1, 2) if self.layout == "nchw" else batch
        # convert writes a batch-1 graph: run row by row
        return np.concatenate([self.session.run(None, {self.input_name: np.ascontiguousarray(row[None])})[0]
                               for row in rows])


def read_model_card(model_dir: Path, stage: str) -> dict:
    import json

    model_dir = Path(model_dir)
    card_path = model_dir / "edgepad.json"
    if model_dir.suffix.lower() in (".h5", ".hdf5") or not card_path.is_file():
        raise UsageError(f"--stage {stage}: {model_dir} is not an `edgepad convert` output folder (no "
                         f"edgepad.json); convert it first, or use --stage keras for a .h5")
    try:
        return json.loads(card_path.read_text())
    except ValueError as error:
        raise InputFileError(f"{card_path}: not valid JSON ({error}); convert the model again") from None


def spoof_index(card: dict) -> int:
    labels = card.get("labels") or ["live", "spoof"]
    if len(labels) != 2:
        raise InputFileError(f"model card: {len(labels)} classes ({', '.join(labels)}); PAD metrics need a live/spoof "
                             "classifier")
    return 1 - int(card.get("live_index", 0))


def _vim3_emulated(model_dir: Path) -> Scorer:
    """The convert folder's NPU library (vim3/libnn_*.so, built for the host) in VeriSilicon's VIM3 emulator,
    through the runtime's ksnn backend with the runtime's KSNN-compatible loader in place of Khadas' KSNN."""
    from types import SimpleNamespace

    from edgepad.runtime import npu_loader

    api = SimpleNamespace(KSNN=npu_loader.KSNN, output_format=npu_loader.output_format)
    return RuntimeScorer(model_dir, "ksnn", "vim3", "vim3-emulated", api=api)


# The stages a model can be scored at on this machine (evaluate.py adds the board).
SCORERS: dict[str, Callable[[Path], Scorer]] = {
    "keras": KerasScorer,
    "onnx": OnnxScorer,
    "caffe": lambda model_dir: RuntimeScorer(model_dir, "opencv", "caffe", "caffe"),
    "vim3-emulated": _vim3_emulated,
    # the integer TFLite model (`--to tflite`) in the host's interpreter, with the reference kernels the board runs
    "tflite": lambda model_dir: RuntimeScorer(model_dir, "tflite", "tflite", "tflite", warn=lambda _message: None),
}
