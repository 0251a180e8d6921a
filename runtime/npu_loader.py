"""A KSNN-compatible loader for edgepad's per-model NPU library (`libnn_<case>.so`), with ctypes and numpy only.

On the board the runtime uses Khadas' KSNN; where KSNN is missing, and on the host, this module speaks the same
calls (`KSNN('VIM3').nn_init(library=, model=, level=)`, `nn_inference([...], platform=, reorder=, output_tensor=,
output_format=)`) over the library edgepad builds from the toolkit's generated ovxlib case (convert/vim3/npu_lib/).

The library has Khadas' libnn ABI (convert/vim3/npu_lib/edgepad_npu.h): this module declares every function with
exactly KSNN 1.4's ctypes argtypes and restype and calls them in KSNN's order, so the host path is the board path.

The host build of the library runs in VeriSilicon's x86 emulator configured as the VIM3's NPU. The emulator reads
its configuration from the environment when it is loaded, so this loader reads the build facts embedded in the
library file (case, target, emulator SDK) *before* loading it and sets VIVANTE_SDK_DIR / VSIMULATOR_CONFIG (the
library sets them itself as it loads when the caller did not, e.g. under Khadas' own KSNN). acuitylite 6.57.1's
emulator stops with an MMU exception when it runs an NBG, so the emulator build of the library, given the .nb,
checks its header and runs the case's weights beside it (`<case>.export.data`: the quantized graph the NBG was
compiled from).

The caller passes float values as KSNN users do: the model card's `targets.vim3.ksnn` says which (channel order,
layout, the mean/std to apply first, or none when the graph takes raw pixels) and the platform/reorder to pass. The
library converts them to the input tensor's type (ovxlib's vsi_nn_Float32ToDtype: round to nearest, ties to even)
and returns dequantized float32 outputs. A library, .nb or card that do not belong together is one NpuError.

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

NBG_MAGIC = b"VPMN"
ELF_MACHINES = {3: "x86", 62: "x86-64", 40: "arm", 183: "aarch64"}
# ovxlib's vsi_nn_type_e (OpenVX's vx_type_e values) -> numpy
DTYPES = {0x002: np.int8, 0x003: np.uint8, 0x004: np.int16, 0x005: np.uint16, 0x006: np.int32, 0x007: np.uint32,
          0x00F: np.float16, 0x010: np.float32}
QNT_NONE, QNT_DFP, QNT_AFFINE_ASYMMETRIC, QNT_AFFINE_SYMMETRIC = 0, 1, 2, 4
MAX_DIMS = 8


class NpuError(RuntimeError):
    """The library, the network binary or the model card cannot work together; the message says why and the fix."""


OUT_FORMAT_FLOAT32 = 3


class output_format:  # noqa: N801 - the name and values KSNN's ksnn.types uses
    OUT_FORMAT_UINT8 = 0
    OUT_FORMAT_INT8 = 1
    OUT_FORMAT_INT16 = 2
    OUT_FORMAT_FLOAT32 = OUT_FORMAT_FLOAT32


# Khadas' npu_tensor, field for field as KSNN 1.4 declares it (ksnn/kplatform/vim3/vim3_nn_types.py) and
# convert/vim3/npu_lib/edgepad_npu.h defines it: NPU_GetInputTensor / NPU_GetOutputTensor return it by value.
class NpuDynamicFixedPoint(ctypes.Structure):
    _fields_ = [("fl", ctypes.c_byte)]


class NpuAffineAsymmetric(ctypes.Structure):
    _fields_ = [("zero_point", ctypes.c_int), ("scale", ctypes.c_float)]


class NpuAffinePerchannelSymmetric(ctypes.Structure):
    _fields_ = [("scales", ctypes.POINTER(ctypes.c_float)), ("scale_dim", ctypes.c_int), ("channel_dim", ctypes.c_int),
                ("zero_points", ctypes.POINTER(ctypes.c_int)), ("zero_points_dim", ctypes.c_int)]


class NpuMeanful(ctypes.Union):
    _fields_ = [("dynamic_fixed_point", NpuDynamicFixedPoint), ("affine_asymmetric", NpuAffineAsymmetric),
                ("affine_perchannel_symmetric", NpuAffinePerchannelSymmetric)]


class NpuQdata(ctypes.Structure):
    _fields_ = [("qnt_type", ctypes.c_char), ("meanful", NpuMeanful)]


class NpuDtype(ctypes.Structure):
    _fields_ = [("fmt", ctypes.c_char), ("nn_type", ctypes.c_int), ("qdata", NpuQdata)]


class NpuTensor(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint * MAX_DIMS), ("dim_num", ctypes.c_uint), ("vtl", ctypes.c_int),
                ("is_const", ctypes.c_int), ("dtype", NpuDtype), ("is_created_from_handle", ctypes.c_int),
                ("is_handle_malloc_by_ovxlib", ctypes.c_int), ("npu_memory_type", ctypes.c_char)]


# KSNN's values for nn_inference's arguments
REORDERS = {"0 1 2": 0, "2 1 0": 1}
PLATFORMS = {"TENSORFLOW": 1, "KERAS": 1, "TFLITE": 1, "CAFFE": 2, "PYTORCH": 3, "DARKNET": 3, "ONNX": 3}
# input setter and output reader per tensor type (nn_type), with the C element type KSNN declares
SETTERS = {0x002: "NPU_SetInput_I8", 0x003: "NPU_SetInput_U8", 0x004: "NPU_SetInput_I16", 0x00F: "NPU_SetInput_F16"}
READERS = {output_format.OUT_FORMAT_UINT8: ("NPU_ConvertTensorToData_U8", ctypes.c_ubyte, np.uint8),
           output_format.OUT_FORMAT_INT8: ("NPU_ConvertTensorToData_I8", ctypes.c_byte, np.int8),
           output_format.OUT_FORMAT_INT16: ("NPU_ConvertTensorToData_I16", ctypes.c_short, np.int16),
           output_format.OUT_FORMAT_FLOAT32: ("NPU_ConvertTensorToData_F32", ctypes.c_float, np.float32)}


def khadas_abi() -> Dict[str, tuple]:
    """Khadas' libnn ABI as KSNN 1.4 declares it with ctypes: function -> (argtypes, restype)."""
    c_int, c_char_p, c_float_p = ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(ctypes.c_float)
    abi = {"NPU_CreateNeuralNetwork": ([c_char_p, c_int], c_int), "NPU_version": ([], c_char_p),
           "NPU_PreProcessNeuralNetwork": ([c_char_p], c_int), "NPU_VerifyGraph": ([], c_int),
           "NPU_ProcessGraph": ([], c_int), "NPU_PostProcessNeuralNetwork": ([], c_int),
           "NPU_GetOutputTensor": ([c_int], NpuTensor), "NPU_GetInputTensor": ([c_int], NpuTensor),
           "NPU_GetInputTensorNum": ([], c_int), "NPU_GetOutputTensorNum": ([], c_int),
           "NPU_SetInput_U8": ([c_float_p, c_int, c_int, c_int], c_int),
           "NPU_SetInput_I8": ([c_float_p, c_int, c_int, c_int], c_int),
           "NPU_SetInput_I16": ([c_float_p, c_int, c_int, c_int], c_int),
           "NPU_SetInput_F16": ([ctypes.POINTER(ctypes.c_short), c_int, c_int, c_int], c_int),
           "NPU_ConvertTensorToData_F16": ([c_int, ctypes.POINTER(ctypes.c_short)], c_int)}
    for function, element, _ in READERS.values():
        abi[function] = ([c_int, ctypes.POINTER(element)], c_int)
    return abi


# edgepad's additions (KSNN never calls them), and the one Khadas' libraries export that KSNN does not call
EDGEPAD_ABI = {"NPU_GetLastError": ([], ctypes.c_char_p), "NPU_GetTargetPid": ([], ctypes.c_uint32),
               "NPU_ReleaseNeuralNetwork": ([], None), "NPU_TypeGetBytes": ([ctypes.c_int], ctypes.c_int)}


class TensorSpec:
    """One NPU tensor as NPU_Get*Tensor describes it: shape (framework order), dtype, quantization."""

    def __init__(self, shape, dtype, qnt_type=QNT_NONE, scale=0.0, zero_point=0, fixed_point_bits=0, nn_type=0):
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.qnt_type = int(qnt_type)
        self.scale = float(scale)
        self.zero_point = int(zero_point)
        self.fixed_point_bits = int(fixed_point_bits)
        self.nn_type = int(nn_type)

    @classmethod
    def from_tensor(cls, tensor: NpuTensor) -> "TensorSpec":
        nn_type = int(tensor.dtype.nn_type)
        if nn_type not in DTYPES:
            raise NpuError(f"the library reports tensor type 0x{nn_type:x}, which this loader does not know")
        qdata = tensor.dtype.qdata
        qnt_type = ord(qdata.qnt_type)
        affine = qdata.meanful.affine_asymmetric
        shape = list(tensor.size)[:tensor.dim_num][::-1]  # ovxlib lists sizes fastest-varying first
        return cls(shape, DTYPES[nn_type], qnt_type, affine.scale, affine.zero_point,
                   qdata.meanful.dynamic_fixed_point.fl, nn_type)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def describe(self) -> str:
        text = f"{self.dtype.name} {list(self.shape)}"
        if self.qnt_type in (QNT_AFFINE_ASYMMETRIC, QNT_AFFINE_SYMMETRIC):
            text += f" scale {self.scale:.6g} zero point {self.zero_point}"
        elif self.qnt_type == QNT_DFP:
            text += f" fixed point {self.fixed_point_bits}"
        return text


def read_build_info(library: str) -> Dict[str, str]:
    """The facts edgepad embeds in each libnn_*.so (case, target, emulator SDK), read without loading it."""
    try:
        with open(library, "rb") as f:
            data = f.read()
    except OSError as error:
        raise NpuError(f"{library}: cannot read the NPU library ({error.strerror}); build it with "
                       "build_board.sh") from None
    found = re.search(rb"edgepad-npu-build;([^\x00]*)", data)
    if not found:
        raise NpuError(f"{library}: not an edgepad NPU library (no build facts in it); rebuild it with "
                       "`edgepad convert --to vim3` or vim3/build_board.sh")
    info = dict(item.split("=", 1) for item in found.group(1).decode().split(";") if "=" in item)
    is_elf = data[:4] == b"\x7fELF"
    info["machine"] = ELF_MACHINES.get(struct.unpack_from("<H", data, 18)[0], "unknown") if is_elf else "?"
    return info


def read_nbg_pid(path: str) -> int:
    with open(path, "rb") as f:
        header = f.read(12)
    if len(header) < 12 or header[:4] != NBG_MAGIC:
        raise NpuError(f"{path}: not a network binary (no VPMN header); convert the model again with --to vim3")
    return struct.unpack_from("<I", header, 8)[0]


def check_pair(library: str, library_pid: int, nbg: str) -> None:
    """A library and an NBG for different NPUs would load and compute garbage: refuse the pair."""
    pid = read_nbg_pid(nbg)
    if pid != library_pid:
        raise NpuError(f"{os.path.basename(library)} was built for NPU pid 0x{library_pid:x}, but "
                       f"{os.path.basename(nbg)} is compiled for pid 0x{pid:x}; rebuild the library from this "
                       "model's vim3/ sources (build_board.sh) or convert again")


def target_pid(target: str) -> int:
    return int(target.rsplit("_PID", 1)[1], 16)


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
    """One loaded libnn_<case>.so with Khadas' ABI declared exactly as KSNN declares it (khadas_abi())."""

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
        for name, (argtypes, restype) in {**khadas_abi(), **EDGEPAD_ABI}.items():
            try:
                function = getattr(self.lib, name)
            except AttributeError:
                raise NpuError(f"{library}: has no {name} (not Khadas' libnn ABI); rebuild it from this model's "
                               "vim3/ sources with build_board.sh, or convert again") from None
            function.argtypes, function.restype = argtypes, restype

    @property
    def version(self) -> str:
        return self.lib.NPU_version().decode()

    @property
    def target_pid(self) -> int:
        return int(self.lib.NPU_GetTargetPid())

    def check(self, status: int, what: str) -> None:
        if status != 0:
            raise NpuError(f"{os.path.basename(self.path)}: {what} failed: {self.lib.NPU_GetLastError().decode()}")


def _card_mismatch(card: dict, spec: TensorSpec) -> Optional[str]:
    shape = card.get("shape")
    if shape is not None and int(np.prod(shape)) != spec.size:
        return f"shape {list(shape)}"
    dtype = card.get("dtype")
    if dtype is not None and dtype != spec.dtype.name:
        return f"dtype {dtype}"
    affine = spec.qnt_type in (QNT_AFFINE_ASYMMETRIC, QNT_AFFINE_SYMMETRIC) and "scale" in card
    if affine and (not np.isclose(float(card["scale"]), spec.scale, rtol=1e-5)
                   or int(card.get("zero_point", 0)) != spec.zero_point):
        return f"scale {card['scale']} zero point {card.get('zero_point', 0)}"
    if spec.qnt_type == QNT_DFP and "fl" in card and int(card["fl"]) != spec.fixed_point_bits:
        return f"fixed point {card['fl']}"
    return None


class KSNN:
    """`ksnn.api.KSNN` for edgepad's runtime where the ksnn package is missing (and on the host): the same methods,
    the same ctypes calls in the same order over the same libnn_<case>.so (see khadas_abi()).

    nn_init: NPU_CreateNeuralNetwork(model, level). nn_inference: per input NPU_GetInputTensor(i), then the setter
    for its nn_type with (values, reorder, platform, i); NPU_ProcessGraph(); per output NPU_GetOutputTensor(i) and
    NPU_ConvertTensorToData_<format>(i, out). Unlike KSNN, a failure raises NpuError with the library's reason
    (KSNN exits the process), inputs are made contiguous float32 first (KSNN passes the array's own bytes), and
    the library is checked before it loads (machine, target against the .nb header, the emulator's SDK).
    """

    def __init__(self, board: str = "VIM3"):
        if board not in ("VIM3", "VIM3L"):
            raise NpuError(f"KSNN: board {board!r}; edgepad's NPU libraries are for VIM3 / VIM3L")
        self.board = board
        self.library: Optional[NpuLibrary] = None
        self.inputs: List[TensorSpec] = []
        self.outputs: List[TensorSpec] = []

    def nn_init(self, library: str = None, model: str = None, level: int = 0) -> None:
        if not library or not model:
            raise NpuError("nn_init needs library= (libnn_*.so) and model= (the .nb)")
        for path, what in ((library, "the NPU library"), (model, "the network binary")):
            if not os.path.isfile(path):
                raise NpuError(f"{path}: {what} is missing; copy the whole vim3/ folder of the convert output")
        if str(model).endswith(".nb"):  # before loading: an emulator build configures the process as its NPU
            check_pair(library, target_pid(read_build_info(library)["target"]), model)
        self.library = NpuLibrary(library)
        lib = self.library.lib
        self.library.check(lib.NPU_CreateNeuralNetwork(os.path.abspath(model).encode(), int(level)),
                           "creating the network")
        self.inputs = [TensorSpec.from_tensor(lib.NPU_GetInputTensor(i)) for i in range(lib.NPU_GetInputTensorNum())]
        self.outputs = [TensorSpec.from_tensor(lib.NPU_GetOutputTensor(i))
                        for i in range(lib.NPU_GetOutputTensorNum())]

    def get_nn_version(self) -> str:
        return "edgepad npu_loader (KSNN v1.4 calls)"

    def check_card(self, entry: dict) -> None:
        """The card's vim3 entry must describe exactly the library's tensors: else its numbers would be wrong."""
        self._require()
        where = os.path.basename(self.library.path)
        card_inputs = [entry["input"]] if "input" in entry else list(entry.get("inputs", []))
        card_outputs = list(entry.get("outputs", []))
        if len(card_inputs) != len(self.inputs) or len(card_outputs) != len(self.outputs):
            raise NpuError(f"the model card lists {len(card_inputs)} input(s) and {len(card_outputs)} output(s), "
                           f"{where} has {len(self.inputs)} and {len(self.outputs)}; the card belongs to another "
                           "model: convert again")
        for kind, cards, specs in (("input", card_inputs, self.inputs), ("output", card_outputs, self.outputs)):
            for index, (card, spec) in enumerate(zip(cards, specs)):
                problem = _card_mismatch(card, spec)
                if problem:
                    raise NpuError(f"model card {kind} {index} ('{card.get('name', '?')}') says {problem}, "
                                   f"but {where} has {spec.describe()}; the card belongs to another build: "
                                   "convert again")

    def nn_inference(self, cv_img, platform: str = None, reorder: str = "0 1 2", input_tensor: int = 1,
                     output_tensor: int = 1, output_format: int = OUT_FORMAT_FLOAT32):
        lib = self._require()
        if reorder not in REORDERS:
            raise NpuError(f"reorder {reorder!r}: KSNN takes '0 1 2' or '2 1 0'")
        if platform not in PLATFORMS:
            raise NpuError(f"platform {platform!r}: pass the model card's (targets.vim3.ksnn.platform); KSNN knows "
                           f"{', '.join(PLATFORMS)}")
        if input_tensor != len(self.inputs) or len(cv_img) < input_tensor:
            raise NpuError(f"the network takes {len(self.inputs)} input(s), got input_tensor={input_tensor} and "
                           f"{len(cv_img)} array(s)")
        if output_tensor != len(self.outputs):
            raise NpuError(f"output_tensor={output_tensor}, but the network has {len(self.outputs)} outputs")
        if output_format not in READERS:
            raise NpuError(f"output_format {output_format!r}: KSNN's formats are {sorted(READERS)}")
        for index in range(input_tensor):
            tensor = lib.NPU_GetInputTensor(index)
            setter = SETTERS.get(int(tensor.dtype.nn_type))
            if setter is None:
                raise NpuError(f"input {index} has type 0x{tensor.dtype.nn_type:x}; KSNN sets only int8, uint8, int16 "
                               "and float16 inputs")
            values = np.asarray(cv_img[index], np.int16 if setter == "NPU_SetInput_F16" else np.float32)
            values = np.ascontiguousarray(values).ravel()
            if values.size != self.inputs[index].size:
                raise NpuError(f"input {index}: got {values.size} values, the network takes "
                               f"{self.inputs[index].size} ({list(self.inputs[index].shape)})")
            pointer = values.ctypes.data_as(getattr(lib, setter).argtypes[0])
            self.library.check(getattr(lib, setter)(pointer, REORDERS[reorder], PLATFORMS[platform], index),
                               f"{setter} (input {index})")
        self.library.check(lib.NPU_ProcessGraph(), "running the graph")
        function, element, dtype = READERS[output_format]
        results = []
        for index in range(output_tensor):
            tensor = lib.NPU_GetOutputTensor(index)
            out = np.zeros(int(np.prod(list(tensor.size)[:tensor.dim_num])), dtype)
            self.library.check(getattr(lib, function)(index, out.ctypes.data_as(ctypes.POINTER(element))),
                               f"{function} (output {index})")
            results.append(out)
        return results

    def release(self) -> None:
        if self.library is not None:
            self.library.lib.NPU_ReleaseNeuralNetwork()
            self.library = None

    def _require(self):
        if self.library is None:
            raise NpuError("call nn_init(library=..., model=...) first")
        return self.library.lib


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run an edgepad NPU library on stacked inputs (host: the emulator).")
    parser.add_argument("--library", required=True)
    parser.add_argument("--model", required=True, help="the .nb (or the case's .export.data)")
    parser.add_argument("--inputs", required=True, help=".npy of float inputs (N, C, H, W): the NPU tensor's layout")
    parser.add_argument("--out", required=True, help=".npz written with key '<output index>' -> (N, ...)")
    args = parser.parse_args(argv)
    try:
        ksnn = KSNN("VIM3")
        ksnn.nn_init(library=args.library, model=args.model)
        outputs: List[List[np.ndarray]] = [[] for _ in ksnn.outputs]
        for x in np.load(args.inputs):
            # planar values (platform ONNX); reorder moves no channel in these libraries
            values = ksnn.nn_inference([x], platform="ONNX", reorder="2 1 0", output_tensor=len(ksnn.outputs))
            for collected, value, spec in zip(outputs, values, ksnn.outputs):
                collected.append(value.reshape(spec.shape))
        np.savez(args.out, **{str(i): np.stack(v) for i, v in enumerate(outputs)})
        ksnn.release()
    except NpuError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
