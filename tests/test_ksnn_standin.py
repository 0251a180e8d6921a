"""The KSNN stand-in and edgepad's loader make exactly the calls Khadas' KSNN 1.4 makes on a libnn_*.so.

Khadas' KSNN (github.com/khadas/ksnn, no licence) cannot be installed in CI. Its calls were recorded once from the
real ksnn-1.4 wheel: tests/support/ksnn_recording.py ran the real `ksnn.api.KSNN` against a recording library
(see that module's docstring for the exact commands) and wrote tests/fixtures/ksnn/ksnn-1.4-calls.json: for each
input tensor type and output format, every library call of nn_init and nn_inference in order, as (function,
argtypes, restype) with the structures written out field by field (offsets and sizes included). Here the stand-in
(tests/runtime_board/ksnn_standin.py) runs the same scenario against the same recording library and must produce
the same list; edgepad's loader declares the same types; the C header lays npu_tensor out the same way.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.ksnn_recording import RecordingLibrary, ctype_name, scenario

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "tests" / "fixtures" / "ksnn" / "ksnn-1.4-calls.json"
sys.path.insert(0, str(ROOT / "tests" / "runtime_board"))


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(RECORDED.read_text())


def standin_calls() -> dict:
    import ksnn_standin

    current = {}

    def install(nn_type):
        def load(path):
            current["library"] = RecordingLibrary(path, nn_type)
            return current["library"]

        ksnn_standin.StandInKSNN.load_library = staticmethod(load)
        return lambda: current["library"]

    try:
        return scenario(ksnn_standin.StandInKSNN, ksnn_standin.output_format, install)
    finally:
        ksnn_standin.StandInKSNN.load_library = staticmethod(ksnn_standin.load_library)


def test_the_standin_makes_the_calls_recorded_from_ksnn_1_4(recorded):
    assert recorded["ksnn"] == "v1.4"
    calls = standin_calls()
    assert sorted(calls) == sorted(recorded["calls"])
    for case, steps in recorded["calls"].items():
        assert calls[case] == steps, case
    # what the scenarios cover: every setter KSNN chooses from nn_type, every output reader it has
    functions = {c[0] for steps in recorded["calls"].values() for step in steps.values() for c in step}
    assert {"NPU_SetInput_I8", "NPU_SetInput_U8", "NPU_SetInput_I16", "NPU_SetInput_F16",
            "NPU_ConvertTensorToData_F32", "NPU_ConvertTensorToData_U8"} <= functions


def test_edgepads_loader_declares_ksnns_types(recorded):
    """runtime/npu_loader.py (the board's KSNN where the wheel is missing, and the host's) declares every function
    KSNN calls with KSNN's own argtypes and restype."""
    from edgepad.runtime.npu_loader import khadas_abi

    declared = {name: [[ctype_name(a) for a in argtypes], ctype_name(restype)]
                for name, (argtypes, restype) in khadas_abi().items()}
    seen = {}
    for steps in recorded["calls"].values():
        for step in steps.values():
            for name, argtypes, restype in step:
                seen[name] = [argtypes, restype]
    for name, types in seen.items():
        assert declared[name] == types, name


def test_the_c_header_lays_out_npu_tensor_as_ksnn_reads_it(recorded, tmp_path):
    """edgepad_npu.h's npu_tensor, compiled: every field at the offset KSNN's ctypes structure reads it from."""
    compiler = shutil.which("gcc")
    assert compiler, "gcc is needed (the NPU library is built with it)"
    layout = next(c[2] for steps in recorded["calls"].values() for c in steps["nn_inference"]
                  if c[0] == "NPU_GetInputTensor")

    def offsets(struct, prefix, c_path):
        for name, offset, kind in struct["fields"]:
            yield f"{prefix}{name}", offset, f"{c_path}{name}"
            if isinstance(kind, dict) and "fields" in kind:
                for inner, inner_offset, inner_c in offsets(kind, f"{prefix}{name}.", f"{c_path}{name}."):
                    yield inner, offset + inner_offset, inner_c

    fields = list(offsets(layout, "", ""))
    lines = [f'printf("{name} %zu\\n", offsetof(npu_tensor, {c_path}));' for name, _, c_path in fields]
    program = tmp_path / "layout.c"
    program.write_text('#include <stddef.h>\n#include <stdio.h>\n#include "edgepad_npu.h"\nint main(void) {\n'
                       + "\n".join(lines) + '\nprintf("sizeof %zu\\n", sizeof(npu_tensor));\nreturn 0;\n}\n')
    binary = tmp_path / "layout"
    subprocess.run([compiler, "-I", str(ROOT / "convert" / "vim3" / "npu_lib"), str(program), "-o", str(binary)],
                   check=True)
    printed = dict(line.rsplit(" ", 1) for line in subprocess.run([str(binary)], capture_output=True, text=True,
                                                                  check=True).stdout.splitlines())
    assert {name: int(printed[name]) for name, _, _ in fields} == {name: offset for name, offset, _ in fields}
    assert int(printed["sizeof"]) == layout["size"] == 112
