"""Record the ctypes calls a KSNN implementation makes on a libnn_*.so, without any NPU library.

A KSNN implementation loads the library with ctypes.CDLL, sets `argtypes` / `restype` on each function and calls it.
`RecordingLibrary` takes the CDLL's place: every call is recorded as (function, argtypes, restype) with the ctypes
types written out (structures field by field, with offsets and sizes), and answers like a library holding one
(1, 3, 4, 4) input and one 5-value output of the given type.

How tests/fixtures/ksnn/ksnn-1.4-calls.json was made (once, by hand; Khadas' KSNN has no licence, so it is not in
this project and CI cannot fetch it): from github.com/khadas/ksnn, `pip install --no-deps --target DIR
ksnn/ksnn-1.4-py3-none-any.whl`, then `PYTHONPATH=DIR python tests/support/ksnn_recording.py OUT.json "WHEEL"`
(WHEEL: where the wheel came from, recorded as is), which runs
the real `ksnn.api.KSNN` against this recording library (its module's CDLL replaced) through `scenario()`.
The stand-in (tests/runtime_board/ksnn_standin.py) is run through the same scenario by tests/test_ksnn_standin.py
and must make exactly the recorded calls.
"""
from __future__ import annotations

import ctypes
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

INPUT_NCHW = (1, 3, 4, 4)
OUTPUT_VALUES = 5
# tensor types KSNN chooses a setter for (nn_type): int8, uint8, int16, float16
NN_TYPES = (0x002, 0x003, 0x004, 0x00F)
OUTPUT_FORMATS = ("OUT_FORMAT_FLOAT32", "OUT_FORMAT_UINT8", "OUT_FORMAT_INT8", "OUT_FORMAT_INT16")


def ctype_name(kind) -> object:
    """A ctypes type written out: scalars by name, pointers and arrays around their element, structures by fields."""
    if kind is None:
        return None
    if isinstance(kind, type) and issubclass(kind, (ctypes.Structure, ctypes.Union)):
        return {"kind": "union" if issubclass(kind, ctypes.Union) else "struct", "size": ctypes.sizeof(kind),
                "fields": [[name, getattr(kind, name).offset, ctype_name(field)] for name, field in kind._fields_]}
    if isinstance(kind, type) and issubclass(kind, ctypes.Array):
        return {"array": ctype_name(kind._type_), "length": kind._length_}
    if isinstance(kind, type) and issubclass(kind, ctypes._Pointer):
        return {"pointer": ctype_name(kind._type_)}
    return kind.__name__


class RecordingFunction:
    def __init__(self, library: "RecordingLibrary", name: str):
        self.library, self.name = library, name
        self.argtypes, self.restype = None, ctypes.c_int

    def __call__(self, *args):
        self.library.calls.append([self.name, [ctype_name(a) for a in (self.argtypes or [])],
                                   ctype_name(self.restype)])
        restype = self.restype
        if isinstance(restype, type) and issubclass(restype, ctypes.Structure):
            tensor = restype()
            shape = INPUT_NCHW[::-1] if "Input" in self.name else (OUTPUT_VALUES,)
            for i, size in enumerate(shape):
                tensor.size[i] = size
            tensor.dim_num = len(shape)
            tensor.dtype.nn_type = self.library.nn_type
            return tensor
        if restype is ctypes.c_char_p:
            return b"recording"
        return 0


class RecordingLibrary:
    def __init__(self, path, nn_type: int = 0x004):
        self.path, self.nn_type, self.calls = path, nn_type, []
        self._functions = {}

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._functions:
            self._functions[name] = RecordingFunction(self, name)
        return self._functions[name]


def scenario(ksnn_class, output_format, install_library) -> dict:
    """KSNN('VIM3').nn_init(...) then nn_inference on one (C, H, W) float32 image for each input type and output
    format; per step, the calls recorded. install_library(nn_type) makes the implementation load a
    RecordingLibrary (returned) instead of a real one."""
    recorded = {}
    with tempfile.TemporaryDirectory() as folder:
        library, model = Path(folder) / "libnn_x.so", Path(folder) / "x.nb"
        library.write_bytes(b"")
        model.write_bytes(b"")
        image = np.linspace(-1, 1, int(np.prod(INPUT_NCHW)), dtype=np.float32).reshape(INPUT_NCHW[1:])
        for nn_type in NN_TYPES:
            for format_name in OUTPUT_FORMATS:
                holder = install_library(nn_type)
                ksnn = ksnn_class("VIM3")
                ksnn.nn_init(library=str(library), model=str(model), level=0)
                init_calls = list(holder().calls)
                holder().calls.clear()
                ksnn.nn_inference([image], platform="ONNX", reorder="2 1 0", output_tensor=1,
                                  output_format=getattr(output_format, format_name))
                recorded[f"nn_type 0x{nn_type:03x}, {format_name}"] = {"nn_init": init_calls,
                                                                       "nn_inference": list(holder().calls)}
    return recorded


def record_real_ksnn() -> dict:
    import ksnn
    import ksnn.api as api
    import ksnn.kplatform.vim3.vim3_nn_api as nn_api
    from ksnn.types import output_format

    current = {}

    def install(nn_type):
        def load(path):
            current["library"] = RecordingLibrary(path, nn_type)
            return current["library"]

        nn_api.CDLL = load
        return lambda: current["library"]

    return {"ksnn": getattr(api, "VERSION", "?"), "module": Path(ksnn.__file__).parent.name,
            "calls": scenario(api.KSNN, output_format, install)}


if __name__ == "__main__":
    recorded = record_real_ksnn()
    if len(sys.argv) > 2:
        recorded["wheel"] = sys.argv[2]  # where the wheel came from, e.g. its repository, commit and sha256
    Path(sys.argv[1]).write_text(json.dumps(recorded, indent=1) + "\n")
