"""A KSNN-compatible loader for edgepad's per-model NPU library (`libnn_<case>.so`), with ctypes and numpy only.

On the board the runtime uses Khadas' KSNN; where KSNN is missing, and on the host, this module speaks the same
calls (`KSNN('VIM3').nn_init(library=, model=, level=)`, `nn_inference([...], platform=, reorder=, output_tensor=,
output_format=)`) over the library edgepad builds from the toolkit's generated ovxlib case (convert/vim3/npu_lib/).

The host build of the library runs in VeriSilicon's x86 emulator configured as the VIM3's NPU. The emulator reads
its configuration from the environment when it is loaded, so this loader reads the build facts embedded in the
library file (case, target, emulator SDK) *before* loading it and sets VIVANTE_SDK_DIR / VSIMULATOR_CONFIG. acuitylite 6.57.1's emulator stops with an MMU exception when it
runs an NBG, so on the host the library runs the case's weights (`<case>.export.data`, next to the .nb: the same
quantized graph the NBG was compiled from); the NBG's header is still checked against the library's target.

Inputs are normalised float arrays (H, W, C) as the model card's preprocessing makes them; this loader lays them
out as the NPU tensor wants (CHW for ONNX/Caffe/PyTorch graphs), quantizes them with the card's scale and zero
point, and dequantizes the outputs the same way. Any mismatch between the card and the library's own tensors is
one clear error (NpuError).

    python3 -m edgepad.runtime.npu_loader --library L --model M --inputs X.npy --out Y.npz  (X: (N, C, H, W))
"""
from __future__ import annotations

import argparse
import ctypes
import os
import re
import struct
import sys
from typing import Dict, List, Optional

import numpy as np

from .card import NpuTensor
from .nbg_header import NbgHeaderError, read_nbg_header, target_pid

ELF_MACHINES = {3: "x86", 62: "x86-64", 40: "arm", 183: "aarch64"}
# ovxlib's vsi_nn_type_e (OpenVX's vx_type_e values) -> numpy
DTYPES = {0x002: np.int8, 0x003: np.uint8, 0x004: np.int16, 0x005: np.uint16, 0x006: np.int32, 0x007: np.uint32,
          0x00F: np.float16, 0x010: np.float32}
DTYPE_NAMES = {np.dtype(v).name: k for k, v in DTYPES.items()}
QNT_NONE, QNT_DFP, QNT_AFFINE_ASYMMETRIC, QNT_AFFINE_SYMMETRIC = 0, 1, 2, 4
NCHW_PLATFORMS = ("ONNX", "CAFFE", "PYTORCH", "DARKNET")
MAX_DIMS = 8


class NpuError(RuntimeError):
    """The library, the network binary or the model card cannot work together; the message says why and the fix."""


OUT_FORMAT_FLOAT32 = 3


class output_format:  # noqa: N801 - the name and values KSNN's ksnn.types uses
    OUT_FORMAT_UINT8 = 0
    OUT_FORMAT_INT8 = 1
    OUT_FORMAT_INT16 = 2
    OUT_FORMAT_FLOAT32 = OUT_FORMAT_FLOAT32


class _TensorInfo(ctypes.Structure):
    _fields_ = [("dim_count", ctypes.c_uint32), ("dims", ctypes.c_uint32 * MAX_DIMS), ("dtype", ctypes.c_int32),
                ("qnt_type", ctypes.c_int32), ("scale", ctypes.c_float), ("zero_point", ctypes.c_int32),
                ("fixed_point_bits", ctypes.c_int32), ("element_count", ctypes.c_uint32),
                ("byte_count", ctypes.c_uint32)]


class TensorSpec:
    """One NPU tensor: shape (framework order), numpy dtype and its quantization."""

    def __init__(self, shape, dtype, qnt_type=QNT_NONE, scale=0.0, zero_point=0, fixed_point_bits=0):
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.qnt_type = int(qnt_type)
        self.scale = float(scale)
        self.zero_point = int(zero_point)
        self.fixed_point_bits = int(fixed_point_bits)

    @classmethod
    def from_info(cls, info: _TensorInfo) -> "TensorSpec":
        if info.dtype not in DTYPES:
            raise NpuError(f"the library reports tensor type 0x{info.dtype:x}, which this loader does not know")
        return cls(list(info.dims)[:info.dim_count], DTYPES[info.dtype], info.qnt_type, info.scale, info.zero_point,
                   info.fixed_point_bits)

    def describe(self) -> str:
        text = f"{self.dtype.name} {list(self.shape)}"
        if self.qnt_type in (QNT_AFFINE_ASYMMETRIC, QNT_AFFINE_SYMMETRIC):
            text += f" scale {self.scale:.6g} zero point {self.zero_point}"
        elif self.qnt_type == QNT_DFP:
            text += f" fixed point {self.fixed_point_bits}"
        return text

    def quantize(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, np.float32)
        if self.qnt_type in (QNT_AFFINE_ASYMMETRIC, QNT_AFFINE_SYMMETRIC):
            values = np.rint(values / self.scale) + self.zero_point
        elif self.qnt_type == QNT_DFP:
            values = np.rint(values * (2.0 ** self.fixed_point_bits))
        if self.dtype.kind in "iu":
            limits = np.iinfo(self.dtype)
            values = np.clip(values, limits.min, limits.max)
        return np.ascontiguousarray(values.astype(self.dtype))

    def dequantize(self, raw: np.ndarray) -> np.ndarray:
        values = raw.astype(np.float32)
        if self.qnt_type in (QNT_AFFINE_ASYMMETRIC, QNT_AFFINE_SYMMETRIC):
            values = (values - self.zero_point) * self.scale
        elif self.qnt_type == QNT_DFP:
            values = values / (2.0 ** self.fixed_point_bits)
        return values


def read_build_info(library: str) -> Dict[str, str]:
    """The facts edgepad embeds in each libnn_*.so (case, target, emulator SDK), read without loading it."""
    try:
        with open(library, "rb") as f:
            data = f.read()
    except OSError as error:
        raise NpuError(f"{library}: cannot read the NPU library ({error.strerror}); build it with build_board.sh") from None
    found = re.search(rb"edgepad-npu-build;([^\x00]*)", data)
    if not found:
        raise NpuError(f"{library}: not an edgepad NPU library (no build facts in it); rebuild it with "
                       "`edgepad convert --to vim3` or vim3/build_board.sh")
    info = dict(item.split("=", 1) for item in found.group(1).decode().split(";") if "=" in item)
    info["machine"] = ELF_MACHINES.get(struct.unpack_from("<H", data, 18)[0], "unknown") if data[:4] == b"\x7fELF" else "?"
    return info


def read_nbg_pid(path: str) -> int:
    try:
        return read_nbg_header(path).pid
    except NbgHeaderError as error:
        raise NpuError(f"{error}; convert the model again with --to vim3") from None


def check_pair(library: str, library_pid: int, nbg: str) -> None:
    """A library and an NBG for different NPUs would load and compute garbage: refuse the pair."""
    pid = read_nbg_pid(nbg)
    if pid != library_pid:
        raise NpuError(f"{os.path.basename(library)} was built for NPU pid 0x{library_pid:x}, but "
                       f"{os.path.basename(nbg)} is compiled for pid 0x{pid:x}; rebuild the library from this "
                       "model's vim3/ sources (build_board.sh) or convert again")


def host_machine() -> str:
    machine = os.uname().machine
    return {"x86_64": "x86-64", "amd64": "x86-64", "aarch64": "aarch64", "arm64": "aarch64"}.get(machine, machine)


def prepare_emulator(info: Dict[str, str], library: str) -> None:
    """The environment the emulator reads when it loads; must be set before the library loads.

    The library finds the SDK's own libraries through the RPATH its host build records (so LD_LIBRARY_PATH, which
    only counts when a process starts, is not needed); the emulator itself still needs VIVANTE_SDK_DIR (to compile
    its shaders) and VSIMULATOR_CONFIG (which NPU to be)."""
    sdk = info.get("sdk", "")
    if not os.path.isfile(os.path.join(sdk, "lib", "libEmulator.so")):
        raise NpuError(f"{library}: the Vivante emulator SDK it was built against is missing ({sdk}); run "
                       "`edgepad toolkit install`, then convert again so the library is rebuilt against it")
    os.environ["VIVANTE_SDK_DIR"] = sdk
    configured = os.environ.setdefault("VSIMULATOR_CONFIG", info["target"])
    if configured != info["target"]:
        raise NpuError(f"this process's emulator is a {configured} (VSIMULATOR_CONFIG), but "
                       f"{os.path.basename(library)} was built for {info['target']}; run it in its own process")


class NpuLibrary:
    """One loaded libnn_<case>.so and its C entry points (see convert/vim3/npu_lib/edgepad_npu.h)."""

    def __init__(self, library: str):
        self.path = os.path.abspath(library)
        self.info = read_build_info(self.path)
        machine = host_machine()
        if self.info["machine"] != machine:
            raise NpuError(f"{library}: built for {self.info['machine']}, this machine is {machine}; build it here "
                           "with vim3/build_board.sh")
        self.emulated = bool(self.info.get("sdk"))
        if self.emulated:
            prepare_emulator(self.info, self.path)
        try:
            self.lib = ctypes.CDLL(self.path)
        except OSError as error:
            raise NpuError(f"{library}: cannot load it ({error}); on the board install the NPU driver and ovxlib, "
                           "on the host run `edgepad toolkit install`") from None
        self._declare()

    def _declare(self) -> None:
        lib, p, i = self.lib, ctypes.c_void_p, ctypes.c_int
        lib.NPU_version.restype = ctypes.c_char_p
        lib.NPU_GetLastError.restype = ctypes.c_char_p
        lib.NPU_GetTargetPid.restype = ctypes.c_uint32
        lib.NPU_CreateNeuralNetwork.argtypes = [ctypes.c_char_p]
        lib.NPU_CreateNeuralNetwork.restype = p
        lib.NPU_ReleaseNeuralNetwork.argtypes = [p]
        lib.NPU_ReleaseNeuralNetwork.restype = None
        for name in ("NPU_GetInputTensorNum", "NPU_GetOutputTensorNum", "NPU_ProcessGraph"):
            getattr(lib, name).argtypes = [p]
            getattr(lib, name).restype = i
        for name in ("NPU_GetInputTensorInfo", "NPU_GetOutputTensorInfo"):
            getattr(lib, name).argtypes = [p, i, ctypes.POINTER(_TensorInfo)]
            getattr(lib, name).restype = i
        for name in ("NPU_SetInput_Raw", "NPU_SetInput_Float32", "NPU_ConvertTensorToData_Raw",
                     "NPU_ConvertTensorToData_Float32"):
            getattr(lib, name).argtypes = [p, i, p, ctypes.c_size_t]
            getattr(lib, name).restype = i

    @property
    def version(self) -> str:
        return self.lib.NPU_version().decode()

    @property
    def target_pid(self) -> int:
        return int(self.lib.NPU_GetTargetPid())

    def check(self, status: int, what: str) -> None:
        if status != 0:
            raise NpuError(f"{os.path.basename(self.path)}: {what} failed: {self.lib.NPU_GetLastError().decode()}")


class NpuNetwork:
    """One network created by the library from a model file: set inputs, run, read outputs."""

    def __init__(self, library: NpuLibrary, model: str):
        self.library = library
        model = os.path.abspath(model)
        if not os.path.isfile(model):
            raise NpuError(f"{model}: missing; copy the whole vim3/ folder of the convert output")
        if model.endswith(".nb"):
            check_pair(library.path, library.target_pid, model)
            if library.emulated:
                model = self._emulator_model(model)
        self.model = model
        handle = library.lib.NPU_CreateNeuralNetwork(model.encode())
        if not handle:
            raise NpuError(f"{os.path.basename(library.path)}: cannot create the network: "
                           f"{library.lib.NPU_GetLastError().decode()}")
        self.handle = ctypes.c_void_p(handle)
        self.inputs = self._specs(library.lib.NPU_GetInputTensorNum, library.lib.NPU_GetInputTensorInfo)
        self.outputs = self._specs(library.lib.NPU_GetOutputTensorNum, library.lib.NPU_GetOutputTensorInfo)

    def _emulator_model(self, nbg: str) -> str:
        weights = os.path.join(os.path.dirname(nbg), f"{self.library.info['case']}.export.data")
        if not os.path.isfile(weights):
            raise NpuError(f"{weights}: missing; the emulator runs the case's weights beside {os.path.basename(nbg)} "
                           "(acuitylite's emulator cannot execute an NBG)")
        return weights

    def _specs(self, count_function, info_function) -> List[TensorSpec]:
        specs = []
        for index in range(count_function(self.handle)):
            info = _TensorInfo()
            self.library.check(info_function(self.handle, index, ctypes.byref(info)), f"tensor info {index}")
            specs.append(TensorSpec.from_info(info))
        return specs

    def check_card(self, card_inputs: List[NpuTensor], card_outputs: List[NpuTensor]) -> None:
        """The card's vim3 tensors must describe exactly the library's tensors: else its numbers would be wrong."""
        where = os.path.basename(self.library.path)
        if len(card_inputs) != len(self.inputs) or len(card_outputs) != len(self.outputs):
            raise NpuError(f"the model card lists {len(card_inputs)} input(s) and {len(card_outputs)} output(s), "
                           f"{where} has {len(self.inputs)} and {len(self.outputs)}; the card belongs to another "
                           "model: convert again")
        for kind, cards, specs in (("input", card_inputs, self.inputs), ("output", card_outputs, self.outputs)):
            for index, (card, spec) in enumerate(zip(cards, specs)):
                problem = _card_mismatch(card, spec)
                if problem:
                    raise NpuError(f"model card {kind} {index} ('{card.name or '?'}') says {problem}, "
                                   f"but {where} has {spec.describe()}; the card belongs to another build: convert again")
        self.inputs = [_with_card_quantization(c, s) for c, s in zip(card_inputs, self.inputs)]
        self.outputs = [_with_card_quantization(c, s) for c, s in zip(card_outputs, self.outputs)]

    def run(self, inputs: List[np.ndarray]) -> List[np.ndarray]:
        """Inputs already in each tensor's shape (float); outputs dequantized to float32 in their shapes."""
        if len(inputs) != len(self.inputs):
            raise NpuError(f"the network takes {len(self.inputs)} input(s), got {len(inputs)}")
        lib = self.library.lib
        for index, (values, spec) in enumerate(zip(inputs, self.inputs)):
            values = np.asarray(values, np.float32)
            if int(np.prod(values.shape)) != int(np.prod(spec.shape)):
                raise NpuError(f"input {index}: got shape {list(values.shape)}, the network takes {list(spec.shape)}")
            raw = spec.quantize(values.reshape(spec.shape))
            self.library.check(lib.NPU_SetInput_Raw(self.handle, index, raw.ctypes.data, raw.nbytes), f"input {index}")
        self.library.check(lib.NPU_ProcessGraph(self.handle), "running the graph")
        results = []
        for index, spec in enumerate(self.outputs):
            raw = np.empty(spec.shape, spec.dtype)
            self.library.check(lib.NPU_ConvertTensorToData_Raw(self.handle, index, raw.ctypes.data, raw.nbytes),
                               f"output {index}")
            results.append(spec.dequantize(raw))
        return results

    def release(self) -> None:
        if getattr(self, "handle", None):
            self.library.lib.NPU_ReleaseNeuralNetwork(self.handle)
            self.handle = None


def _card_mismatch(card: NpuTensor, spec: TensorSpec) -> Optional[str]:
    if card.shape is not None and int(np.prod(card.shape)) != int(np.prod(spec.shape)):
        return f"shape {list(card.shape)}"
    if card.dtype is not None and card.dtype != spec.dtype.name:
        return f"dtype {card.dtype}"
    zero_point = card.zero_point or 0
    if spec.qnt_type in (QNT_AFFINE_ASYMMETRIC, QNT_AFFINE_SYMMETRIC) and card.scale is not None:
        if not np.isclose(float(card.scale), spec.scale, rtol=1e-5) or int(zero_point) != spec.zero_point:
            return f"scale {card.scale} zero point {zero_point}"
    if spec.qnt_type == QNT_DFP and card.fl is not None and int(card.fl) != spec.fixed_point_bits:
        return f"fixed point {card.fl}"
    return None


def _with_card_quantization(card: NpuTensor, spec: TensorSpec) -> TensorSpec:
    """The spec with the card's scale and zero point (equal to the library's once checked): the card rules."""
    if spec.qnt_type in (QNT_AFFINE_ASYMMETRIC, QNT_AFFINE_SYMMETRIC) and card.scale is not None:
        return TensorSpec(spec.shape, spec.dtype, spec.qnt_type, card.scale, card.zero_point or 0)
    return spec


class KSNN:
    """The calls of Khadas' `ksnn.api.KSNN` that edgepad's runtime makes, over an edgepad NPU library."""

    def __init__(self, board: str = "VIM3"):
        self.board = board
        self.network: Optional[NpuNetwork] = None

    def nn_init(self, library: str = None, model: str = None, level: int = 0) -> None:
        if not library or not model:
            raise NpuError("nn_init needs library= (libnn_*.so) and model= (the .nb)")
        if str(model).endswith(".nb"):  # before loading: an emulator build configures the process as its NPU
            check_pair(library, target_pid(read_build_info(library)["target"]), model)
        self.network = NpuNetwork(NpuLibrary(library), model)

    def check_card(self, inputs: List[NpuTensor], outputs: List[NpuTensor]) -> None:
        self._require().check_card(inputs, outputs)

    def nn_inference(self, input_tensor, platform: str = "ONNX", reorder: str = "0 1 2", output_tensor: int = 1,
                     output_format: int = OUT_FORMAT_FLOAT32):
        network = self._require()
        inputs = []
        for image, spec in zip(input_tensor, network.inputs):
            image = np.asarray(image, np.float32)
            if image.ndim == 3:
                image = image[..., [int(c) for c in reorder.split()]] if reorder.split() != ["0", "1", "2"] else image
                if platform.upper() in NCHW_PLATFORMS and len(spec.shape) == 4:
                    image = image.transpose(2, 0, 1)
            inputs.append(image)
        outputs = network.run(inputs)
        if output_tensor != len(outputs):
            raise NpuError(f"output_tensor={output_tensor}, but the network has {len(outputs)} outputs")
        if output_format != OUT_FORMAT_FLOAT32:  # KSNN's raw formats: the tensors' own quantized values
            return [spec.quantize(o).ravel() for o, spec in zip(outputs, network.outputs)]
        return [o.ravel() for o in outputs]

    def nn_destory_network(self) -> None:  # sic: KSNN's spelling
        if self.network is not None:
            self.network.release()
            self.network = None

    def _require(self) -> NpuNetwork:
        if self.network is None:
            raise NpuError("call nn_init(library=..., model=...) first")
        return self.network


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run an edgepad NPU library on stacked inputs (host: the emulator).")
    parser.add_argument("--library", required=True)
    parser.add_argument("--model", required=True, help="the .nb (or the case's .export.data)")
    parser.add_argument("--inputs", required=True, help=".npy of float inputs (N, ...) in the NPU tensor's layout")
    parser.add_argument("--out", required=True, help=".npz written with key '<output index>' -> (N, ...)")
    args = parser.parse_args(argv)
    try:
        if args.model.endswith(".nb"):
            check_pair(args.library, target_pid(read_build_info(args.library)["target"]), args.model)
        library = NpuLibrary(args.library)
        network = NpuNetwork(library, args.model)
        outputs: List[List[np.ndarray]] = [[] for _ in network.outputs]
        for x in np.load(args.inputs):
            for collected, value in zip(outputs, network.run([x])):
                collected.append(value)
        np.savez(args.out, **{str(i): np.stack(v) for i, v in enumerate(outputs)})
        network.release()
    except NpuError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
