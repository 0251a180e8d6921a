"""Reference inputs and the host's onnxruntime outputs for each model of a bundle: what the board must reproduce.

`reference/inputs.npz`: key `<model>` -> float32 (N, ...) normalised inputs in the layout of the model's `onnx`
target. `reference/outputs.npz`: key `<model>/<output>` -> the host's outputs, one row per input (N, ...).
`reference/outputs.tflite.npz`: the same for the models with a `tflite` target, from the host's TFLite interpreter
(what the board's tflite backend must reproduce).
`reference/outputs.ksnn.npz`: the same for the models with NPU files (a `vim3` target), from the bundle's own NPU
library run by the runtime's ksnn backend (runtime/npu_loader.py) in VeriSilicon's emulator on the host: what the
board's NPU must reproduce.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgepad.errors import InputFileError
from edgepad.runtime.card import ModelCard, OnnxEntry

TFLITE_REFERENCE = "outputs.tflite.npz"
KSNN_REFERENCE = "outputs.ksnn.npz"
EMULATOR_TIMEOUT_S = 1800  # the emulator takes about a second per inference, plus seconds per model load


def reference_inputs(card: ModelCard, sample_images: Path | None, where: str) -> np.ndarray:
    """The convert step's parity images (synthetic, plus the user's samples) as one (N, ...) batch."""
    from edgepad.convert.parity_inputs import parity_images
    from edgepad.runtime.preprocess import batch

    target = onnx_target(card, where)
    images, _sources = parity_images(card, sample_images)
    return np.concatenate([batch(x, target.layout) for x in images]).astype(np.float32)


def host_outputs(model_dir: Path, card: ModelCard, inputs: np.ndarray, model_name: str) -> dict[str, np.ndarray]:
    """onnxruntime (optimisations off) on the model's `onnx` target, one input at a time, rows stacked."""
    from edgepad.convert.onnx.onnx_runner import run_onnx

    target = onnx_target(card, str(model_dir))
    outputs = run_onnx(str(model_dir / target.file), [inputs[i:i + 1] for i in range(len(inputs))])
    return {f"{model_name}/{name}": np.concatenate(values) for name, values in outputs.items()}


def host_tflite_outputs(model_dir: Path, card: ModelCard, inputs: np.ndarray,
                        model_name: str) -> dict[str, np.ndarray]:
    """The runtime's tflite backend on the host (TFLite's reference kernels, no delegate), on the same inputs."""
    from edgepad.runtime.backends.tflite_backend import TfliteModel

    nhwc = inputs if onnx_target(card, str(model_dir)).layout == "nhwc" else inputs.transpose(0, 2, 3, 1)
    model = TfliteModel(str(model_dir), card, delegate=None, warn=lambda _message: None)
    rows = [model.run(nhwc[i:i + 1]) for i in range(len(nhwc))]
    return {f"{model_name}/{name}": np.concatenate([row[name] for row in rows]) for name in rows[0]}


def host_npu_outputs(bundle_dir: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The bundle's NPU libraries on `inputs` ({model: (N, ...)}), through the runtime's own `--parity --backend
    ksnn` (npu_loader over the library's emulator build) in a child process: the emulator configures the process
    as its NPU when it loads and prints to stdout. Keys `<model>/<output>`."""
    with tempfile.TemporaryDirectory(prefix="edgepad-npu-reference-") as work:
        inputs_path, outputs_path, log = Path(work) / "inputs.npz", Path(work) / "outputs.npz", Path(work) / "log"
        np.savez(inputs_path, **inputs)
        command = [sys.executable, "-m", "edgepad.runtime.vim3_infer", "--bundle", str(bundle_dir), "--parity",
                   str(inputs_path), "--out", str(outputs_path), "--backend", "ksnn"]
        env = {k: v for k, v in os.environ.items() if k != "EDGEPAD_KSNN_API"}  # edgepad's loader, not a stand-in
        with open(log, "wb") as out:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                  timeout=EMULATOR_TIMEOUT_S)
        if done.returncode != 0 or not outputs_path.is_file():
            lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("error: ")]
            reason = lines[-1][len("error: "):] if lines else "it stopped without saying why"
            raise InputFileError(f"running the NPU libraries of {', '.join(inputs)} in the host emulator for the "
                                 f"reference outputs failed: {reason}; run `edgepad toolkit install`, or convert "
                                 "the model again with --to onnx,vim3")
        with np.load(outputs_path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}


def onnx_target(card: ModelCard, where: str) -> OnnxEntry:
    target = card.targets.onnx
    if target is None:
        raise InputFileError(f"{where}: its edgepad.json has no onnx target; convert the model with `edgepad convert`")
    return target


def per_input(array: np.ndarray) -> list[np.ndarray]:
    """(N, ...) -> N arrays of (1, ...): the shape compare_outputs sees from a conversion."""
    return [array[i:i + 1] for i in range(len(array))]
