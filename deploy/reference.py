"""Reference inputs and the host's onnxruntime outputs for each model of a bundle: what the board must reproduce.

`reference/inputs.npz`: key `<model>` -> float32 (N, ...) normalised inputs in the layout of the model's `onnx`
target. `reference/outputs.npz`: key `<model>/<output>` -> the host's outputs, one row per input (N, ...).
`reference/outputs.tflite.npz`: the same for the models with a `tflite` target, from the host's TFLite interpreter
(what the board's tflite backend must reproduce).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepad.errors import InputFileError

TFLITE_REFERENCE = "outputs.tflite.npz"


def reference_inputs(card: dict, sample_images: Path | None, where: str) -> np.ndarray:
    """The convert step's parity images (synthetic, plus the user's samples) as one (N, ...) batch."""
    from edgepad.convert.parity_inputs import parity_images
    from edgepad.runtime.preprocess import batch

    target = onnx_target(card, where)
    images, _sources = parity_images(card, sample_images)
    return np.concatenate([batch(x, target.get("layout", "nhwc")) for x in images]).astype(np.float32)


def host_outputs(model_dir: Path, card: dict, inputs: np.ndarray, model_name: str) -> dict[str, np.ndarray]:
    """onnxruntime (optimisations off) on the model's `onnx` target, one input at a time, rows stacked."""
    from edgepad.convert.onnx.onnx_runner import run_onnx

    target = onnx_target(card, str(model_dir))
    outputs = run_onnx(str(model_dir / target["file"]), [inputs[i:i + 1] for i in range(len(inputs))])
    return {f"{model_name}/{name}": np.concatenate(values) for name, values in outputs.items()}


def host_tflite_outputs(model_dir: Path, card: dict, inputs: np.ndarray, model_name: str) -> dict[str, np.ndarray]:
    """The runtime's tflite backend on the host (TFLite's reference kernels, no delegate), on the same inputs."""
    from edgepad.runtime.backends.tflite_backend import TfliteModel

    nhwc = inputs if onnx_target(card, str(model_dir)).get("layout", "nhwc") == "nhwc" else inputs.transpose(0, 2, 3, 1)
    model = TfliteModel(str(model_dir), card, delegate=None, warn=lambda _message: None)
    rows = [model.run(nhwc[i:i + 1]) for i in range(len(nhwc))]
    return {f"{model_name}/{name}": np.concatenate([row[name] for row in rows]) for name in rows[0]}


def onnx_target(card: dict, where: str) -> dict:
    target = card.get("targets", {}).get("onnx")
    if not target or "file" not in target:
        raise InputFileError(f"{where}: its edgepad.json has no onnx target; convert the model with `edgepad convert`")
    return target


def per_input(array: np.ndarray) -> list[np.ndarray]:
    """(N, ...) -> N arrays of (1, ...): the shape compare_outputs sees from a conversion."""
    return [array[i:i + 1] for i in range(len(array))]
