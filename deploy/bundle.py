"""`edgepad bundle`: everything the board needs in one folder, with a manifest that proves it.

BUNDLE/manifest.json, BUNDLE/runtime/ (the installed edgepad.runtime package), BUNDLE/models/<model>/ (edgepad
convert output folders: classifier, embedding, pnet, rnet, onet), BUNDLE/reference/{inputs,outputs}.npz (see
reference.py; outputs.ksnn.npz for models with NPU files), BUNDLE/estimate.json (with NPU files: the toolkit's
estimated on-board NPU time per model, and per frame with --estimate-image; estimate.py).
"""
from __future__ import annotations

import datetime
import json
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepad import __version__
from edgepad.errors import InputFileError, UsageError
from edgepad.progress import Steps
from edgepad.runtime.card import CardError, ModelCard
from edgepad.staging import staged_output_dir

from . import manifest as manifest_io
from .estimate import pipeline_estimate
from .reference import (
    KSNN_REFERENCE,
    TFLITE_REFERENCE,
    host_npu_outputs,
    host_outputs,
    host_tflite_outputs,
    reference_inputs,
)

DETECTOR_NETS = ("pnet", "rnet", "onet")
ESTIMATE_NAME = "estimate.json"
SKIPPED_NAMES = {"__pycache__", ".DS_Store"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


@dataclass
class BundleOptions:
    out: Path
    classifier: Path | None  # the live/spoof classifier (None: a bundle with only an embedding model)
    detector: Path | None = None  # a folder holding pnet/, rnet/, onet/ (edgepad convert outputs)
    sample_images: Path | None = None  # real images added to the classifier's reference inputs
    force: bool = False
    embedding: Path | None = None  # a face recognition (embedding) model's convert output: models/embedding/
    estimate_image: Path | None = None  # a camera frame: the estimated on-board NPU time per frame like it


@dataclass
class BundleResult:
    out: Path
    manifest: manifest_io.Manifest
    reference_inputs: dict[str, int]  # model -> number of reference inputs
    npu_estimate: dict | None = None  # estimate.json: the performance model's estimated NPU time (see estimate.py)


def build_bundle(options: BundleOptions, steps: Steps | None = None) -> BundleResult:
    """The Python API behind `edgepad bundle`. Writes options.out completely or not at all."""
    steps = steps or Steps(quiet=True)
    model_dirs = {}
    if options.classifier is not None:
        model_dirs["classifier"] = _convert_output(options.classifier, "--classifier")
    if options.embedding is not None:
        model_dirs["embedding"] = _convert_output(options.embedding, "--embedding")
    if not model_dirs:
        raise UsageError("give --classifier (a live/spoof classifier) and/or --embedding (a face recognition model)")
    if options.detector is not None:
        for net in DETECTOR_NETS:
            model_dirs[net] = _convert_output(Path(options.detector) / net, "--detector")
    cards = {name: _read_card(folder) for name, folder in model_dirs.items()}

    with staged_output_dir(options.out, options.force) as work:
        with steps.step("Copying the runtime and the models"):
            _copy_tree(runtime_source_dir(), work / "runtime")
            for name, folder in model_dirs.items():
                _copy_tree(folder, work / "models" / name)
        inputs, outputs, tflite_outputs = {}, {}, {}
        for name, card in cards.items():
            with steps.step(f"Computing reference outputs of {name} with onnxruntime"):
                samples = options.sample_images if name == "classifier" else None
                inputs[name] = reference_inputs(card, samples, str(model_dirs[name]))
                outputs.update(host_outputs(work / "models" / name, card, inputs[name], name))
            if card.targets.tflite is not None:
                with steps.step(f"Computing reference outputs of {name} with the TFLite interpreter"):
                    tflite_outputs.update(host_tflite_outputs(work / "models" / name, card, inputs[name], name))
        (work / "reference").mkdir()
        np.savez(work / "reference" / "inputs.npz", **inputs)
        np.savez(work / "reference" / "outputs.npz", **outputs)
        if tflite_outputs:
            np.savez(work / "reference" / TFLITE_REFERENCE, **tflite_outputs)
        on_npu = [name for name, card in cards.items() if has_host_npu_library(card)]
        if on_npu:
            with steps.step(f"Computing reference outputs of {', '.join(on_npu)} with their NPU libraries in the "
                            "VIM3 emulator"):
                npu_outputs = host_npu_outputs(work, {name: inputs[name] for name in on_npu})
            np.savez(work / "reference" / KSNN_REFERENCE, **npu_outputs)
        estimate = None
        if on_npu:
            with steps.step("Estimating the NPU time per model" + (f" and per frame like {options.estimate_image}"
                                                                  if options.estimate_image else "")):
                estimate = pipeline_estimate(work, options.estimate_image)
            if estimate is not None:
                (work / ESTIMATE_NAME).write_text(json.dumps(estimate, indent=2) + "\n")
        with steps.step("Writing manifest.json"):
            manifest = manifest_io.seal(work, host_versions(), cards)
    return BundleResult(Path(options.out), manifest, {name: len(x) for name, x in inputs.items()}, estimate)


def has_host_npu_library(card: ModelCard) -> bool:
    """The model has NPU files and a library the host's emulator runs (the Khadas SDK toolkit ships sources only)."""
    vim3 = card.targets.vim3
    entries = [vim3, *(vim3.sizes or {}).values()] if vim3 is not None else []  # PNet: one NBG per input size
    return any(entry.npu_library is not None and bool(entry.npu_library.library) for entry in entries)


def runtime_source_dir() -> Path:
    import edgepad.runtime

    return Path(edgepad.runtime.__file__).resolve().parent


def host_versions() -> dict:
    import cv2
    import onnxruntime

    return {
        "edgepad": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opencv": cv2.__version__,
        "built_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _convert_output(folder: Path, option: str) -> Path:
    folder = Path(folder)
    if not (folder / "edgepad.json").is_file():
        hint = ("a folder with pnet/, rnet/ and onet/, each an `edgepad convert` output" if option == "--detector"
                else "an `edgepad convert` output folder")
        raise InputFileError(f"{option} {folder}: no edgepad.json there; pass {hint}")
    return folder


def _read_card(folder: Path) -> ModelCard:
    try:
        return ModelCard.load(folder)
    except CardError as error:
        raise InputFileError(str(error)) from None


def _copy_tree(source: Path, destination: Path) -> None:
    shutil.copytree(source, destination, ignore=_ignore_build_leftovers)


def _ignore_build_leftovers(_folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n in SKIPPED_NAMES or Path(n).suffix in SKIPPED_SUFFIXES or ".partial-" in n}
