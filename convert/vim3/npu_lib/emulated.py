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

from ...parity import compare_outputs, decision_agreement
from .perf_estimate import SHOW_PERF_ENV

# The library runs the graph the toolkit simulated, on the NPU's integer arithmetic: it should agree with the
# simulation much more closely than the quantized model agrees with float.
LIBRARY_VS_SIMULATION_MIN_COSINE = 0.999
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
                     sources: list[str], card: dict | None = None, inputs: list[np.ndarray] | None = None,
                     min_agreement: float | None = None) -> dict:
    """Compare the library's outputs (in the ONNX outputs' order) with float and with the toolkit's simulation,
    which ran on the very same input values (`inputs`, pixels)."""
    card = card or {}
    entry = card.get("targets", {}).get("vim3", {})
    names = list(float_reference)
    if len(library_outputs) != len(names):
        raise ExportError(f"the NPU library has {len(library_outputs)} outputs, the ONNX graph {len(names)}")
    emulated = {}
    for name, stacked in zip(names, library_outputs):
        shape = np.shape(float_reference[name][0])
        if stacked[0].size != int(np.prod(shape)):
            raise ExportError(f"NPU library output for '{name}' has {stacked[0].size} values, ONNX has shape {list(shape)}")
        emulated[name] = [np.asarray(v, np.float32).reshape(shape) for v in stacked]

    vs_float = compare_outputs(float_reference, emulated, reference_name="onnxruntime float (model.nchw.onnx)",
                               candidate_name="NPU library in the emulator", atol=None, min_cosine=min_cosine)
    first = names[0]
    agreement, flipped = decision_agreement(float_reference[first], emulated[first], card)
    cosine_min = min((o.cosine_min for o in vs_float.outputs), default=1.0)
    # top-level figures are against float (what the convert table shows); vs_simulation isolates the library
    section = {"reference": "onnxruntime float", "max_abs": vs_float.max_abs, "cosine": vs_float.cosine,
               "cosine_min": cosine_min, "top1_agreement": _top1(vs_float), "decision_agreement": agreement,
               "min_agreement": min_agreement, "flipped": [sources[i] for i in flipped],
               "inputs": len(sources), "eval_sources": sources,
               "vs_float": vs_float.to_json(), "note": "emulation time is not a speed figure and is not reported"}
    float_ok = vs_float.passed and (agreement is None or min_agreement is None or agreement >= min_agreement)
    vs_simulation = None
    if inputs is not None:
        section["input_tensor"] = input_tensor_check(inputs, entry.get("input", {}))
    if simulation is not None:
        simulation = {n: [np.asarray(v, np.float32).reshape(np.shape(float_reference[n][0])) for v in simulation[n]]
                      for n in names}
        vs_simulation = compare_outputs(simulation, emulated, reference_name=f"{toolkit} quantized simulation",
                                        candidate_name="NPU library in the emulator", atol=None,
                                        min_cosine=LIBRARY_VS_SIMULATION_MIN_COSINE)
        section["vs_simulation"] = vs_simulation.to_json()
        section["vs_simulation"]["max_abs_steps"] = _in_steps(vs_simulation, entry.get("outputs", []))
        sim_agreement, _ = decision_agreement(simulation[first], emulated[first], card)
        section["vs_simulation"]["decision_agreement"] = sim_agreement
        simulation_vs_float = compare_outputs(float_reference, simulation, reference_name="onnxruntime float",
                                              candidate_name=f"{toolkit} quantized simulation", atol=None,
                                              min_cosine=min_cosine)
        section["simulation_vs_float"] = {"cosine": simulation_vs_float.cosine, "passed": simulation_vs_float.passed}
    section["diagnosis"] = diagnose(float_ok, vs_simulation.passed if vs_simulation else None, toolkit,
                                    section.get("input_tensor"), section.get("vs_simulation"))
    section["passed"] = float_ok and (vs_simulation is None or vs_simulation.passed)
    return section


def input_tensor_check(inputs: list[np.ndarray], spec: dict) -> dict:
    """Whether the library's input tensor holds exactly the values the simulation was given: the loader quantizes
    them with the card's parameters; a value off that grid would reach the NPU changed."""
    values = np.stack([np.asarray(x, np.float64) for x in inputs])
    dtype = spec.get("dtype", "float32")
    if "scale" in spec:
        step = float(spec["scale"])
        grid = np.rint(values / step) * step  # (q - zero point) * scale, q = rint(x / scale) + zero point
    elif "fl" in spec:
        step = 2.0 ** -float(spec["fl"])
        grid = np.rint(values / step) * step
    elif dtype == "float16":
        grid = values.astype(np.float16).astype(np.float64)
    else:
        grid = values.astype(np.float32).astype(np.float64)
    if dtype in ("uint8", "int8", "int16", "uint16") and ("scale" in spec or "fl" in spec):
        info = np.iinfo(dtype)
        low = (info.min - float(spec.get("zero_point", 0))) * float(spec.get("scale", 2.0 ** -float(spec.get("fl", 0))))
        high = (info.max - float(spec.get("zero_point", 0))) * float(spec.get("scale", 2.0 ** -float(spec.get("fl", 0))))
        grid = np.clip(grid, low, high)
    off = np.abs(grid - values)
    return {"dtype": dtype, "values": int(values.size), "changed_by_quantization": int(np.count_nonzero(off)),
            "max_change": float(off.max()) if off.size else 0.0, "identical_to_simulation": bool(not np.any(off)),
            "range": [float(values.min()), float(values.max())]}


def _in_steps(parity, outputs: list[dict]) -> list[float | None]:
    """Each output's max abs difference in units of its quantization step (None for float outputs)."""
    steps = []
    for output, spec in zip(parity.outputs, outputs):
        step = float(spec["scale"]) if spec.get("scale") else (2.0 ** -float(spec["fl"]) if "fl" in spec else None)
        steps.append(output.max_abs / step if step else None)
    return steps


def _top1(parity) -> float | None:
    values = [o.top1_agreement for o in parity.outputs if o.top1_agreement is not None]
    return min(values) if values else None


def diagnose(float_ok: bool, simulation_ok: bool | None, toolkit: str, input_tensor: dict | None = None,
             vs_simulation: dict | None = None) -> str:
    """Which step a disagreement comes from, from what was measured: the quantization (the toolkit's own simulation
    already shows it), the input tensor (values the library's input cannot hold), or the compiled graph."""
    if simulation_ok is None:
        return "no toolkit simulation to compare with: only the float comparison is known"
    if simulation_ok and float_ok:
        return "the library computes what the toolkit simulated, within tolerance of float"
    if simulation_ok:
        return (f"quantization: the library agrees with {toolkit}'s quantized simulation, which itself is beyond "
                "tolerance of float (see the vim3 section's layer table)")
    measured = (f"the library's outputs differ from {toolkit}'s quantized simulation (cosine "
                f"{vs_simulation['cosine']:.6f}, max {max(s or 0 for s in vs_simulation.get('max_abs_steps') or [0]):.1f}"
                " output steps)" if vs_simulation else f"the library's outputs differ from {toolkit}'s simulation")
    if input_tensor is not None and not input_tensor["identical_to_simulation"]:
        return (f"the input tensor: {input_tensor['changed_by_quantization']} of {input_tensor['values']} input values "
                f"change by up to {input_tensor['max_change']:.3g} when the library quantizes them ({input_tensor['dtype']}),"
                f" so it did not compute on the simulation's input; {measured}")
    if input_tensor is not None:
        return (f"inside the compiled graph: the input tensors were measured identical ({input_tensor['values']} values,"
                f" exact in {input_tensor['dtype']}), yet {measured}; compare per-layer dumps to find the first layer")
    return measured
