"""The VIM3 NPU through Khadas' KSNN: one `KSNN('VIM3')` per compiled model (`.nb` + `libnn_<name>.so`).

The calls, exactly as KSNN takes them (see the shared notes on KSNN):

    k = KSNN('VIM3')
    k.nn_init(library=<libnn_*.so>, model=<*.nb>, level=0)
    outs = k.nn_inference([hwc_float32], platform='ONNX', reorder='0 1 2', output_tensor=<number of outputs>,
                          output_format=output_format.OUT_FORMAT_FLOAT32)

How to call KSNN for a model is in its card, `targets.vim3.ksnn` (written by the vim3 target, see ksnn_call()):
    {"platform": "ONNX", "reorder": "2 1 0", "channel_order": "RGB", "layout": "chw", "mean": [...], "std": [...]}
a user's script resizes to the input size, puts the channels in `channel_order`, applies (x - mean) / std (skipped
when they are null: the graph takes raw pixels), lays the array out as `layout` and passes platform and reorder
to nn_inference. This backend gets images already normalised by the card's preprocessing (the same mean/std) and
does the rest. Outputs come back flat; they are reshaped to the card's output shapes. PNet has no single shape:
its vim3 entry may list one compiled model per pyramid size under "sizes": {"HxW": {"nb": ..., "library": ...}}.

The card's `targets.vim3` entry is read with these keys, each optional: nb (default: the one vim3/*.nb), library
(default: the one vim3/libnn_*.so; a build for this machine in vim3/<machine>/ beside it is preferred: what
`edgepad deploy` builds on the board or a bundle ships for it), ksnn (above; older cards: platform, reorder,
input_layout), outputs [{name, shape}] (default: the card's outputs), sizes (see above).

Pluggable API: anything with a `KSNN` class and an `output_format` holding OUT_FORMAT_FLOAT32 can stand in for
the ksnn package: pass `api=` or set EDGEPAD_KSNN_API=<importable module> (e.g. a ctypes loader that runs the
same libnn_*.so in VeriSilicon's emulator on the host).
"""
from __future__ import annotations

import glob
import importlib
import os
import platform
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional, Set

import numpy as np

from ..card import KsnnCall, ModelCard, NpuTensor, Preprocess, Vim3Entry
from ..preprocess import as_channel_vector
from .base import BackendError, InferenceModel, MissingTargetError

BOARD = "VIM3"
API_ENV = "EDGEPAD_KSNN_API"
# edgepad's graphs come from ONNX (NCHW): planar values, platform ONNX. reorder '2 1 0' is what Khadas' own ONNX
# examples pass; neither Khadas' libraries nor edgepad's move channels for it (the channel order is the card's).
KSNN_PLATFORM = "ONNX"
KSNN_REORDER = "2 1 0"
KSNN_LAYOUT = "chw"


def ksnn_call(preprocess: Preprocess, pixel_input: bool = False) -> KsnnCall:
    """The card's `targets.vim3.ksnn`: what a KSNN script passes to nn_inference and what it feeds, from the card's
    preprocessing (mean/std null when the graph itself normalises raw pixels: `pixel_input`, or a card whose
    mean/std leave pixels as they are)."""
    mean, std = preprocess.mean, preprocess.std
    raw_pixels = pixel_input or mean is None or std is None or (
        all(float(m) == 0 for m in mean) and all(float(s) == 1 for s in std))
    return KsnnCall(platform=KSNN_PLATFORM, reorder=KSNN_REORDER, channel_order=str(preprocess.channel_order).upper(),
                    layout=KSNN_LAYOUT, mean=None if raw_pixels else [float(m) for m in mean],
                    std=None if raw_pixels else [float(s) for s in std])


def load_ksnn_api():
    """The KSNN API: $EDGEPAD_KSNN_API's module if set, else the ksnn package, else edgepad's npu_loader."""
    module_name = os.environ.get(API_ENV)
    if module_name:
        module = importlib.import_module(module_name)
        return SimpleNamespace(KSNN=module.KSNN, output_format=module.output_format,
                               NpuError=getattr(module, "NpuError", ()))
    try:
        from ksnn.api import KSNN
        from ksnn.types import output_format
    except ImportError:
        # No KSNN (a board without the wheel, or the host): edgepad's own loader speaks the same calls over the
        # same libnn_*.so; on the host it runs the library's emulator build.
        from .. import npu_loader

        return SimpleNamespace(KSNN=npu_loader.KSNN, output_format=npu_loader.output_format,
                               NpuError=npu_loader.NpuError)
    return SimpleNamespace(KSNN=KSNN, output_format=output_format)


def machine_library(library: str) -> str:
    """The build of `library` for this machine (vim3/<machine>/libnn_<case>.so, e.g. vim3/aarch64/: built on the
    board by `edgepad deploy`, or shipped in the bundle) when there is one, else `library` itself (on the host: the
    emulator build)."""
    native = os.path.join(os.path.dirname(library), platform.machine(), os.path.basename(library))
    return native if os.path.isfile(native) else library


class KsnnModel(InferenceModel):
    name = "ksnn"

    def __init__(self, model_dir: str, card: Optional[ModelCard] = None, api=None):
        super().__init__(model_dir, card)
        entry = self.card.targets.vim3
        if entry is None:
            raise MissingTargetError(f"{model_dir}: no NPU model in it (the card has no vim3 target); "
                               "convert with --to onnx,vim3, or choose --backend onnxruntime")
        self.entry: Vim3Entry = entry
        self.api = api or load_ksnn_api()
        call = entry.ksnn
        if call is not None:
            self.reorder, self.platform, self.input_layout = call.reorder, call.platform, call.layout
        else:  # older cards: platform, reorder, input_layout on the entry
            self.reorder = entry.reorder or "0 1 2"
            self.platform = entry.platform or "ONNX"
            # KSNN's platform says how the values are laid out: interleaved for TENSORFLOW/KERAS/TFLITE, else planar
            interleaved = self.platform in ("TENSORFLOW", "KERAS", "TFLITE")
            self.input_layout = entry.input_layout or ("hwc" if interleaved else "chw")
        self.outputs: List[NpuTensor] = entry.outputs or [NpuTensor(name=o.name, shape=o.shape)
                                                          for o in self.card.outputs]
        # a graph with the normalisation inside takes the decoded pixel values (the card's npu_input); KSNN is
        # handed pixel floats, which its NPU_SetInput_* quantize with the tensor's scale and zero point
        self.pixel_input = entry.npu_input is not None and entry.npu_input.values == "pixels"
        if not self.output_names:
            self.output_names = [o.name for o in self.outputs]
        self._instances: Dict[str, object] = {}
        # A PNet input size without its NBG: run on this CPU model instead, saying so once per size (see bundle.py)
        self.size_fallback: Optional[Callable[[], InferenceModel]] = None
        self.warn: Callable[[str], None] = lambda message: None
        self._cpu: Optional[InferenceModel] = None
        self.cpu_sizes: List[str] = []  # sizes that ran on the CPU
        if not entry.sizes:
            self._instance(self.entry, "default")  # load now: a wrong file should fail at start, not mid-video

    @classmethod
    def available(cls) -> bool:
        if os.environ.get(API_ENV):
            return True
        try:
            import ksnn.api  # noqa: F401
        except ImportError:
            return False
        return True

    def fixed_input_sizes(self) -> Optional[Set[str]]:
        return set(self.entry.sizes) if self.entry.sizes else None

    def _instance(self, entry: Vim3Entry, key: str):
        if key not in self._instances:
            nb = self._one(entry.nb, "vim3/*.nb", "the compiled model (.nb)")
            library = machine_library(self._one(entry.library, "vim3/libnn_*.so", "the model's library (libnn_*.so)"))
            ksnn = self.api.KSNN(BOARD)
            try:
                ksnn.nn_init(library=library, model=nb, level=0)
                if hasattr(ksnn, "check_card"):  # edgepad's npu_loader: the card must describe the library's tensors
                    ksnn.check_card([entry.input or self.entry.input or NpuTensor()], entry.outputs or self.outputs)
            except getattr(self.api, "NpuError", ()) as error:
                raise BackendError(f"{self.model_dir}: {error}") from None
            self._instances[key] = ksnn
        return self._instances[key]

    def _one(self, named, pattern: str, what: str) -> str:
        if named:
            return self._path(named)
        found = sorted(glob.glob(os.path.join(self.model_dir, pattern)))
        if len(found) != 1:
            raise BackendError(f"{self.model_dir}: expected one {pattern} ({what}), found {len(found)}; "
                               "name it in the card's vim3 entry")
        return found[0]

    def _pixels(self, normalised: np.ndarray) -> np.ndarray:
        """The normalised image (run()'s input) back to the pixel values it came from: integers, exactly."""
        preprocess = self.card.preprocess
        channels = normalised.shape[-1]
        mean = as_channel_vector(preprocess.mean, channels, "mean")
        std = as_channel_vector(preprocess.std, channels, "std")
        return np.clip(np.rint(normalised * std + mean), 0, 255).astype(np.float32)

    def _run_on_cpu(self, batch: np.ndarray, key: str) -> Dict[str, np.ndarray]:
        if self._cpu is None:
            self._cpu = self.size_fallback()
        if key not in self.cpu_sizes:
            self.cpu_sizes.append(key)
            self.warn(f"{os.path.basename(self.model_dir.rstrip('/'))}: no NPU model for input {key} "
                      f"({len(self.entry.sizes)} sizes compiled); that size runs on {self._cpu.name}")
        return self._cpu.run(batch)

    def _entry_for(self, height: int, width: int):
        sizes = self.entry.sizes
        if not sizes:
            return self.entry, "default", self.outputs
        key = f"{height}x{width}"
        if key not in sizes:
            raise MissingTargetError(f"{self.model_dir}: no NPU model compiled for input {key} (have "
                                     f"{', '.join(sorted(sizes))}); compile this size or run this model with "
                                     "--backend onnxruntime")
        entry = sizes[key]
        return entry, key, entry.outputs or self.outputs

    def _run_batch(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        image = batch[0]
        sizes = self.entry.sizes
        key = f"{image.shape[0]}x{image.shape[1]}"
        if sizes and key not in sizes and self.size_fallback is not None:
            return self._run_on_cpu(batch, key)
        entry, key, outputs = self._entry_for(image.shape[0], image.shape[1])
        ksnn = self._instance(entry, key)
        if self.pixel_input:
            image = self._pixels(image)
        if self.input_layout == "chw":
            image = np.ascontiguousarray(image.transpose(2, 0, 1))
        try:
            flat = ksnn.nn_inference([image], platform=self.platform, reorder=self.reorder,
                                     output_tensor=len(outputs),
                                     output_format=self.api.output_format.OUT_FORMAT_FLOAT32)
        except getattr(self.api, "NpuError", ()) as error:
            raise BackendError(f"{self.model_dir}: {error}") from None
        if len(flat) != len(outputs):
            raise BackendError(f"{self.model_dir}: the NPU returned {len(flat)} outputs, the card lists {len(outputs)}")
        result = {}
        for name, spec, values in zip(self.output_names, outputs, flat):
            shape = [int(d) for d in spec.shape]
            values = np.asarray(values, dtype=np.float32).ravel()
            if int(np.prod(shape)) != values.size:
                raise BackendError(f"{self.model_dir}: NPU output '{name}' has {values.size} values, the card's shape "
                                   f"{shape} needs {int(np.prod(shape))}; the card does not match the .nb")
            result[name] = values.reshape([1] + shape[1:] if shape and shape[0] == 1 else [1] + shape)
        return result
