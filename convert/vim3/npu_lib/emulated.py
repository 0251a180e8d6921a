"""The `vim3_emulated` report section: the built NPU library run in VeriSilicon's emulator, against float ONNX and
against the toolkit's own quantized simulation, on the same inputs.

The library runs in a child process (runtime/npu_loader.py's CLI): the emulator takes its configuration from the
environment at load time and prints to stdout, neither of which belongs in edgepad's own process. Emulation time
is not reported: it says nothing about the board's speed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgepad.errors import ExportError

from ...parity import compare_outputs
from .perf_estimate import SHOW_PERF_ENV

# The library runs the graph the toolkit simulated, on the NPU's integer arithmetic: it should agree with the
# simulation much more closely than the quantized model agrees with float.
LIBRARY_VS_SIMULATION_MIN_COSINE = 0.99
RUN_TIMEOUT_S = 1800


def run_library(library: Path, model: Path, inputs_nchw: list[np.ndarray], log: Path) -> list[np.ndarray]:
    """Per library output, the stacked outputs (N, ...) for the inputs, computed in the emulator."""
    with tempfile.TemporaryDirectory(prefix="edgepad-npu-run-") as work:
        inputs_path, outputs_path = Path(work) / "inputs.npy", Path(work) / "outputs.npz"
        np.save(inputs_path, np.stack([np.asarray(x, np.float32) for x in inputs_nchw]))
        command = [sys.executable, "-m", "edgepad.runtime.npu_loader", "--library", str(library), "--model",
                   str(model), "--inputs", str(inputs_path), "--out", str(outputs_path)]
        env = dict(os.environ, **SHOW_PERF_ENV)  # the performance model's estimate, printed into the log
        with open(log, "w") as out:
            result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=RUN_TIMEOUT_S)
        if result.returncode != 0 or not outputs_path.is_file():
            lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("error: ")]
            reason = lines[-1][len("error: "):] if lines else "it stopped without saying why"
            raise ExportError(f"running {library.name} in the emulator failed: {reason} (log: {log})")
        with np.load(outputs_path) as data:
            return [data[str(i)] for i in range(len(data.files))]


def emulated_section(library_outputs: list[np.ndarray], float_reference: dict[str, list[np.ndarray]],
                     simulation: dict[str, list[np.ndarray]] | None, toolkit: str, min_cosine: float,
                     sources: list[str]) -> dict:
    """Compare the library's outputs (in the ONNX outputs' order) with float and with the toolkit's simulation."""
    names = list(float_reference)
    if len(library_outputs) != len(names):
        raise ExportError(f"the NPU library has {len(library_outputs)} outputs, the ONNX graph {len(names)}")
    emulated = {}
    for name, stacked in zip(names, library_outputs, strict=True):
        shape = np.shape(float_reference[name][0])
        if stacked[0].size != int(np.prod(shape)):
            raise ExportError(f"NPU library output for '{name}' has {stacked[0].size} values, ONNX has shape "
                              f"{list(shape)}")
        emulated[name] = [np.asarray(v, np.float32).reshape(shape) for v in stacked]

    vs_float = compare_outputs(float_reference, emulated, reference_name="onnxruntime float (model.nchw.onnx)",
                               candidate_name="NPU library in the emulator", atol=None, min_cosine=min_cosine)
    # top-level figures are against float (what the convert table shows); vs_simulation isolates the library
    section = {"reference": "onnxruntime float", "max_abs": vs_float.max_abs, "cosine": vs_float.cosine,
               "top1_agreement": _top1(vs_float), "inputs": len(sources), "input_sources": sources,
               "vs_float": vs_float.to_json(), "note": "emulation time is not a speed figure and is not reported"}
    vs_simulation = None
    if simulation is not None:
        simulation = {n: [np.asarray(v, np.float32).reshape(np.shape(float_reference[n][0])) for v in simulation[n]]
                      for n in names}
        vs_simulation = compare_outputs(simulation, emulated, reference_name=f"{toolkit} quantized simulation",
                                        candidate_name="NPU library in the emulator", atol=None,
                                        min_cosine=LIBRARY_VS_SIMULATION_MIN_COSINE)
        section["vs_simulation"] = vs_simulation.to_json()
        simulation_vs_float = compare_outputs(float_reference, simulation, reference_name="onnxruntime float",
                                              candidate_name=f"{toolkit} quantized simulation", atol=None,
                                              min_cosine=min_cosine)
        section["simulation_vs_float"] = {"cosine": simulation_vs_float.cosine, "passed": simulation_vs_float.passed}
    section["diagnosis"] = diagnose(vs_float.passed, vs_simulation.passed if vs_simulation else None, toolkit)
    section["passed"] = vs_float.passed and (vs_simulation is None or vs_simulation.passed)
    return section


def _top1(parity) -> float | None:
    values = [o.top1_agreement for o in parity.outputs if o.top1_agreement is not None]
    return min(values) if values else None


def diagnose(float_ok: bool, simulation_ok: bool | None, toolkit: str) -> str:
    """Which step a disagreement comes from: the quantization (the toolkit's own simulation already shows it) or
    the compiled case/library (it computes something else than the toolkit simulated)."""
    if simulation_ok is None:
        return "no toolkit simulation to compare with: only the float comparison is known"
    if simulation_ok and float_ok:
        return "the library computes what the toolkit simulated, within tolerance of float"
    if simulation_ok:
        return (f"quantization: the library agrees with {toolkit}'s quantized simulation, which itself is beyond "
                "tolerance of float (see the vim3 section's layer table)")
    return (f"the compiled case: the library's outputs differ from {toolkit}'s quantized simulation of the same "
            "graph (input quantization, layout, or the case's build); the quantization itself is not the cause"
            + ("" if float_ok else ", and the outputs are also beyond tolerance of float"))
