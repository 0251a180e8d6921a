"""StandInKSNN: a test double for Khadas' KSNN 1.4 (`ksnn.api.KSNN`), which is installed only on VIM3 boards.

Written from reading KSNN 1.4's source (ksnn/api.py, ksnn/kplatform/vim3/vim3_nn_api.py and vim3_nn_types.py in the
ksnn-1.4 wheel of github.com/khadas/ksnn; that code has no licence, so none of it is here): the same methods with
the same defaults, and on the library the same ctypes calls with the same argtypes, restype and npu_tensor struct,
in the same order. tests/test_ksnn_standin.py checks the calls against the ones recorded from the real wheel
(tests/fixtures/ksnn/ksnn-1.4-calls.json). As in KSNN, a failure ends in SystemExit, and the input array's own
bytes are passed (flatten(), no conversion to float32).

    KSNN(board)
    nn_init(library=<libnn_*.so>, model=<*.nb>, level=0)
        NPU_CreateNeuralNetwork(model bytes, level)
    nn_inference([img], platform=..., reorder='0 1 2', input_tensor=1, output_tensor=1, output_format=FLOAT32)
        per input:  NPU_GetInputTensor(i), NPU_SetInput_<type of dtype.nn_type>(data, reorder, platform, i)
        NPU_ProcessGraph()
        per output: NPU_GetOutputTensor(i), NPU_ConvertTensorToData_<format>(i, out)

The library: a real libnn_*.so is loaded with ctypes.CDLL (on the host, edgepad's emulator build). The board suite's
bundles have no NPU build: their placeholder library is a JSON file naming an ONNX model and its NCHW input shape,
and StandInLibrary answers the same C functions with onnxruntime on that model (planar inputs, like edgepad's
library with platform ONNX). Every KSNN-level call is logged in StandInKSNN.calls, every library call in
StandInKSNN.library_calls. Importable as a KSNN API module (EDGEPAD_KSNN_API=ksnn_standin).
"""
from __future__ import annotations

import ctypes
import enum
import json
import os
import sys

import numpy as np

NPU_MAX_DIM_NUM = 8


class output_format(enum.Enum):  # noqa: N801 -- KSNN's own name (ksnn.types.output_format)
    OUT_FORMAT_UINT8 = 0
    OUT_FORMAT_INT8 = 1
    OUT_FORMAT_INT16 = 2
    OUT_FORMAT_FLOAT32 = 3


# npu_tensor as KSNN 1.4 declares it
class npu_dynamic_fixed_point(ctypes.Structure):  # noqa: N801
    _fields_ = [("fl", ctypes.c_byte)]


class npu_affine_asymmetric(ctypes.Structure):  # noqa: N801
    _fields_ = [("zero_point", ctypes.c_int), ("scale", ctypes.c_float)]


class npu_affine_perchannel_symmetric(ctypes.Structure):  # noqa: N801
    _fields_ = [("scales", ctypes.POINTER(ctypes.c_float)), ("scale_dim", ctypes.c_int),
                ("channel_dim", ctypes.c_int), ("zero_points", ctypes.POINTER(ctypes.c_int)),
                ("zero_points_dim", ctypes.c_int)]


class npu_meanful(ctypes.Union):  # noqa: N801
    _fields_ = [("dynamic_fixed_point", npu_dynamic_fixed_point), ("affine_asymmetric", npu_affine_asymmetric),
                ("affine_perchannel_symmetric", npu_affine_perchannel_symmetric)]


class npu_qdata(ctypes.Structure):  # noqa: N801
    _fields_ = [("qnt_type", ctypes.c_char), ("meanful", npu_meanful)]


class npu_dtype(ctypes.Structure):  # noqa: N801
    _fields_ = [("fmt", ctypes.c_char), ("nn_type", ctypes.c_int), ("qdata", npu_qdata)]


class npu_tensor(ctypes.Structure):  # noqa: N801
    _fields_ = [("size", ctypes.c_uint * NPU_MAX_DIM_NUM), ("dim_num", ctypes.c_uint), ("vtl", ctypes.c_int),
                ("is_const", ctypes.c_int), ("dtype", npu_dtype), ("is_created_from_handle", ctypes.c_int),
                ("is_handle_malloc_by_ovxlib", ctypes.c_int), ("npu_memory_type", ctypes.c_char)]


REORDERS = {"0 1 2": 0, "2 1 0": 1}
PLATFORMS = {"TENSORFLOW": 1, "KERAS": 1, "TFLITE": 1, "CAFFE": 2, "PYTORCH": 3, "DARKNET": 3, "ONNX": 3}
SETTERS = {0x002: ("NPU_SetInput_I8", ctypes.c_float, None), 0x003: ("NPU_SetInput_U8", ctypes.c_float, None),
           0x004: ("NPU_SetInput_I16", ctypes.c_float, None), 0x00F: ("NPU_SetInput_F16", ctypes.c_short, np.int16)}
READERS = {output_format.OUT_FORMAT_UINT8: ("NPU_ConvertTensorToData_U8", ctypes.c_ubyte, np.uint8),
           output_format.OUT_FORMAT_INT8: ("NPU_ConvertTensorToData_I8", ctypes.c_byte, np.int8),
           output_format.OUT_FORMAT_INT16: ("NPU_ConvertTensorToData_I16", ctypes.c_short, np.int16),
           output_format.OUT_FORMAT_FLOAT32: ("NPU_ConvertTensorToData_F32", ctypes.c_float, np.float32)}


def write_placeholder_library(path, onnx_file: str, input_nchw) -> None:
    """The board suite's placeholder for a libnn_*.so: the ONNX model (relative to its folder) and NCHW input shape
    StandInLibrary runs in its place."""
    with open(str(path), "w") as f:
        json.dump({"onnx": onnx_file, "input_nchw": [int(d) for d in input_nchw]}, f)


def load_library(path: str):
    """ctypes.CDLL for a real shared object, StandInLibrary for the board suite's placeholder (a JSON file)."""
    with open(path, "rb") as f:
        head = f.read(1)
    return StandInLibrary(path) if head == b"{" else ctypes.CDLL(path)


class StandInKSNN:
    calls: list = []
    library_calls: list = []
    load_library = staticmethod(load_library)  # tests may put a recording library here

    def __init__(self, board=None):
        StandInKSNN.calls.append(("KSNN", board))
        self.board = board
        self.library = None

    # -- the library calls, one function each, declared as KSNN declares them
    def _function(self, name, argtypes, restype):
        function = getattr(self.library, name)
        function.argtypes = argtypes
        function.restype = restype
        StandInKSNN.library_calls.append((name, tuple(argtypes), restype))
        return function

    def _tensor(self, name, index):
        return self._function(name, [ctypes.c_int], npu_tensor)(index)

    def nn_init(self, library=None, model=None, level=0):
        if not library:
            sys.exit("Board VIM3 requires parameter 'library'")
        if not os.path.exists(library):
            sys.exit("so lib '" + library + "' not exist")
        if not model:
            sys.exit("Board VIM3 requires parameter 'model'")
        if not os.path.exists(model):
            sys.exit("nb file '" + model + "' not exist")
        os.environ["VIV_VX_DEBUG_LEVEL"] = "1" if level > 1 else "0"
        os.environ["VIV_VX_PROFILE"] = "1" if level > 1 else "0"
        StandInKSNN.calls.append(("nn_init", library, model, level))
        self.library = StandInKSNN.load_library(library)
        create = self._function("NPU_CreateNeuralNetwork", [ctypes.c_char_p, ctypes.c_int], ctypes.c_int)
        return 0 if create(bytes(model, encoding="utf-8"), level) == 0 else 1

    def nn_inference(self, cv_img, platform=None, reorder="0 1 2", input_tensor=1, output_tensor=1,
                     output_format=output_format.OUT_FORMAT_FLOAT32):
        StandInKSNN.calls.append(("nn_inference", platform, reorder, input_tensor, output_tensor, output_format,
                                  tuple(np.shape(cv_img[0])), np.asarray(cv_img[0]).dtype))
        for i in range(input_tensor):
            tensor = self._tensor("NPU_GetInputTensor", i)
            if reorder not in REORDERS:
                sys.exit("reorder format error")
            if tensor.dtype.nn_type not in SETTERS:
                sys.exit(f"KSNN sets no input of type 0x{tensor.dtype.nn_type:x}")
            name, element, convert = SETTERS[tensor.dtype.nn_type]
            data = np.asarray(cv_img[i], dtype=convert) if convert else cv_img[i].flatten()
            setter = self._function(name, [ctypes.POINTER(element), ctypes.c_int, ctypes.c_int, ctypes.c_int],
                                    ctypes.c_int)
            if setter(data.ctypes.data_as(ctypes.POINTER(element)), REORDERS[reorder], PLATFORMS.get(platform, 0),
                      i) != 0:
                sys.exit("Set nn inputs error !!!")
        if self._function("NPU_ProcessGraph", [], ctypes.c_int)() != 0:
            sys.exit("run neural network  error !!!")
        if output_format not in READERS:
            sys.exit("Unknown out format")
        name, element, dtype = READERS[output_format]
        outputs = []
        for i in range(output_tensor):
            tensor = self._tensor("NPU_GetOutputTensor", i)
            reader = self._function(name, [ctypes.c_int, ctypes.POINTER(element)], ctypes.c_int)
            out = np.zeros(int(np.prod(list(tensor.size)[:tensor.dim_num])), dtype=dtype)
            reader(i, out.ctypes.data_as(ctypes.POINTER(element)))
            outputs.append(out)
        return outputs


class _StandInFunction:
    def __init__(self, implementation):
        self.implementation = implementation
        self.argtypes, self.restype = None, ctypes.c_int

    def __call__(self, *args):
        for value, kind in zip(args, self.argtypes or ()):  # what ctypes would refuse
            kind.from_param(value)
        return self.implementation(*args)


class StandInLibrary:
    """A libnn_*.so answered in Python: onnxruntime on the ONNX model the placeholder names, planar NCHW inputs
    (platform 2 or 3) or interleaved (platform 1), float32 outputs; the tensors report nn_type int16."""

    def __init__(self, path):
        import onnxruntime as ort

        with open(path) as f:
            spec = json.load(f)
        folder = os.path.dirname(os.path.abspath(path))
        self.session = ort.InferenceSession(os.path.join(folder, spec["onnx"]), providers=["CPUExecutionProvider"])
        self.input_nchw = [int(d) for d in spec["input_nchw"]]
        self.inputs, self.outputs = None, None
        for name in ("NPU_CreateNeuralNetwork", "NPU_GetInputTensor", "NPU_GetOutputTensor", "NPU_ProcessGraph",
                     "NPU_SetInput_I16", "NPU_ConvertTensorToData_F32"):
            setattr(self, name, _StandInFunction(getattr(self, "_" + name)))

    def _describe(self, shape):
        tensor = npu_tensor()
        for i, size in enumerate(reversed(shape)):
            tensor.size[i] = size
        tensor.dim_num = len(shape)
        tensor.dtype.nn_type = 0x004
        return tensor

    def _NPU_CreateNeuralNetwork(self, model, level):  # noqa: N802
        return 0 if model.endswith(b".nb") else -1

    def _NPU_GetInputTensor(self, index):  # noqa: N802
        return self._describe(self.input_nchw)

    def _NPU_GetOutputTensor(self, index):  # noqa: N802
        return self._describe(self.outputs[index].shape)

    def _NPU_SetInput_I16(self, data, reorder, platform, index):  # noqa: N802
        n, c, h, w = self.input_nchw
        values = np.ctypeslib.as_array(data, shape=(n * c * h * w,)).copy()
        if platform == 1:
            self.inputs = values.reshape(n, h, w, c)
        elif platform in (2, 3):
            self.inputs = values.reshape(n, c, h, w).transpose(0, 2, 3, 1)
        else:
            return -1
        return 0

    def _NPU_ProcessGraph(self):  # noqa: N802
        name = self.session.get_inputs()[0].name  # the bundles' model.onnx takes NHWC
        self.outputs = [np.asarray(v, np.float32) for v in self.session.run(None, {name: self.inputs})]
        return 0

    def _NPU_ConvertTensorToData_F32(self, index, out):  # noqa: N802
        values = self.outputs[index].ravel()
        np.ctypeslib.as_array(out, shape=(values.size,))[:] = values
        return 0


KSNN = StandInKSNN
