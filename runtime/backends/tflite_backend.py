"""tflite: the integer TFLite model (`--to tflite`) in the TFLite interpreter, on the NPU through Mesa's Teflon delegate
where the board has it (mainline kernel, etnaviv), else on the CPU with a note.

The interpreter comes from `ai_edge_litert` (LiteRT, TFLite's successor) or `tflite_runtime` (the board's Python 3.8:
tflite-runtime 2.14), never from TensorFlow. The model takes uint8: normalised inputs are quantized with the input
tensor's scale and zero point, rounding half away from zero as TFLite's own QUANTIZE kernel does.
"""
from __future__ import annotations

import glob
import os
import sys
from typing import Dict, List, Optional

import numpy as np

from .base import BackendError, InferenceModel, MissingTargetError

DELEGATE_ENV = "EDGEPAD_TEFLON"  # a libteflon.so to load instead of searching the usual folders
TEFLON_PATHS = (  # Debian's mesa-teflon-delegate, a Mesa build installed by hand, Armbian
    "/usr/lib/*-linux-gnu/libteflon.so", "/usr/lib/libteflon.so", "/usr/local/lib/libteflon.so",
    "/usr/local/lib/*-linux-gnu/libteflon.so", "/usr/lib/teflon/libteflon.so",
)


def interpreter_module():
    """The installed TFLite interpreter package, or None."""
    try:
        from ai_edge_litert import interpreter
        return interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter
        return interpreter
    except ImportError:
        return None


def find_teflon(explicit: Optional[str] = None) -> Optional[str]:
    """The Teflon delegate: the one given (--delegate or EDGEPAD_TEFLON), else the first in the usual folders."""
    path = explicit or os.environ.get(DELEGATE_ENV)
    if path:
        if not os.path.isfile(path):
            raise BackendError(f"--delegate {path}: no such file; give the path of Mesa's libteflon.so")
        return path
    for pattern in TEFLON_PATHS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    scaled = values / scale + zero_point
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)  # half away from zero, as TFLite's QUANTIZE
    return np.clip(rounded, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    if not scale:  # a float tensor
        return values.astype(np.float32)
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


class TfliteModel(InferenceModel):
    name = "tflite"

    def __init__(self, model_dir: str, card: dict | None = None, delegate: Optional[str] = None, warn=None):
        super().__init__(model_dir, card)
        entry = self.card.get("targets", {}).get("tflite")
        if entry is None:
            raise MissingTargetError(f"{model_dir}: the model card has no TFLite model; convert with --to tflite")
        module = interpreter_module()
        if module is None:
            raise BackendError("--backend tflite: no TFLite interpreter here; pip install tflite-runtime "
                               "(Python 3.8-3.11, aarch64 or x86_64) or ai-edge-litert")
        self.entry = entry
        path = self._path(entry["file"])
        delegate_path = find_teflon(delegate)
        delegates = []
        if delegate_path:
            try:
                delegates = [module.load_delegate(delegate_path)]
            except (ValueError, OSError) as error:
                raise BackendError(f"{delegate_path}: the Teflon delegate does not load ({error}); is the etnaviv "
                                   "driver loaded (mainline kernel 6.7 or newer)?") from None
        else:
            (warn or _stderr)(f"{os.path.basename(self.model_dir.rstrip('/'))} runs in the TFLite interpreter on the "
                              "CPU: no Teflon delegate (libteflon.so) found; install mesa-teflon-delegate or pass "
                              "--delegate")
        self.delegate = delegate_path
        try:
            # TFLite's reference integer kernels, never the default XNNPACK delegate: measured on the same uint8 input,
            # XNNPACK's requantization differs by 1 step on 0.15% of the first convolution's outputs, which the example
            # PAD model grows to 0.09 in P(live); the board's tflite-runtime 2.14 runs the reference kernels, so the
            # host's checks must too.
            self.interpreter = module.Interpreter(
                model_path=path, experimental_delegates=delegates or None,
                experimental_op_resolver_type=module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            first = str(error).splitlines()[0]
            raise BackendError(f"{path}: the TFLite interpreter cannot load it ({first})") from None
        self.input = self.interpreter.get_input_details()[0]
        self.outputs: List[dict] = _outputs_in_model_order(self.interpreter)
        if not self.output_names:
            self.output_names = [o["name"] for o in self.outputs]

    @classmethod
    def available(cls) -> bool:
        return interpreter_module() is not None

    def describe(self) -> str:
        where = f"Teflon ({self.delegate})" if self.delegate else "CPU"
        return f"{os.path.basename(self.model_dir.rstrip('/'))} on tflite ({where})"

    def _run_batch(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        scale, zero_point = self.input["quantization"]
        dtype = self.input["dtype"]
        data = quantize(batch, scale, zero_point, dtype) if np.issubdtype(dtype, np.integer) else batch.astype(dtype)
        self.interpreter.set_tensor(self.input["index"], data.reshape(self.input["shape"]))
        self.interpreter.invoke()
        values = []
        for detail in self.outputs:
            raw = self.interpreter.get_tensor(detail["index"])
            values.append(dequantize(raw, *detail["quantization"]))
        # The converter keeps the Keras output order; the card names them.
        return {name: value for name, value in zip(self.output_names, values)}


def _outputs_in_model_order(interpreter) -> List[dict]:
    """Output tensors in the Keras model's order: the converter's signature names them output_0, output_1, ...
    while get_output_details() lists them by tensor index."""
    details = interpreter.get_output_details()
    try:
        signature = interpreter.get_signature_runner().get_output_details()
    except (ValueError, AttributeError):  # a model without signatures, or an interpreter too old to list them
        return details
    by_index = {d["index"]: d for d in details}

    def position(name: str) -> int:
        return int(name.rsplit("_", 1)[-1]) if name.rsplit("_", 1)[-1].isdigit() else 0

    ordered = [by_index.get(signature[name]["index"]) for name in sorted(signature, key=position)]
    return ordered if all(ordered) else details


def _stderr(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)
