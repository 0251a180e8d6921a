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

from ...heldout import decision_agreement
from ...parity import compare_outputs
from .perf_estimate import SHOW_PERF_ENV

# The library runs the graph the toolkit simulated, on the NPU's integer arithmetic, on the same input values: the
# target is that it agrees with the simulation much more closely than the quantized model agrees with float.
LIBRARY_VS_SIMULATION_MIN_COSINE = 0.999
RUN_TIMEOUT_S = 1800


def run_library(library: Path, model: Path, inputs_nchw: list[np.ndarray], log: Path,
                env: dict | None = None) -> list[np.ndarray]:
    """Per library output, the stacked outputs (N, ...) for the inputs, computed in the emulator."""
    with tempfile.TemporaryDirectory(prefix="edgepad-npu-run-") as work:
        inputs_path, outputs_path = Path(work) / "inputs.npy", Path(work) / "outputs.npz"
        np.save(inputs_path, np.stack([np.asarray(x, np.float32) for x in inputs_nchw]))
        command = [sys.executable, "-m", "edgepad.runtime.npu_loader", "--library", str(library), "--model",
                   str(model), "--inputs", str(inputs_path), "--out", str(outputs_path)]
        env = dict(os.environ, **SHOW_PERF_ENV, **(env or {}))  # the performance model's estimate, into the log
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
            raise ExportError(f"NPU library output for '{name}' has {stacked[0].size} values, "
                              f"ONNX has shape {list(shape)}")
        emulated[name] = [np.asarray(v, np.float32).reshape(shape) for v in stacked]

    vs_float = compare_outputs(float_reference, emulated, reference_name="onnxruntime float (model.nchw.onnx)",
                               candidate_name="NPU library in the emulator", atol=None, min_cosine=min_cosine)
    first = names[0]
    kept = decision_agreement(np.stack(float_reference[first]), np.stack(emulated[first]), card, list(sources))
    agreement = kept.share
    cosine_min = min((o.cosine_min for o in vs_float.outputs), default=1.0)
    # top-level figures are against float (what the convert table shows); vs_simulation isolates the library
    section = {"reference": "onnxruntime float", "max_abs": vs_float.max_abs, "cosine": vs_float.cosine,
               "cosine_min": cosine_min, "top1_agreement": _top1(vs_float), "decision_agreement": agreement,
               "min_agreement": min_agreement, "flipped": kept.flipped,
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
        section["vs_simulation"]["max_abs_steps"] = _in_steps(simulation, emulated, entry.get("outputs", []))
        section["vs_simulation"]["decision_agreement"] = decision_agreement(
            np.stack(simulation[first]), np.stack(emulated[first]), card, list(sources)).share
        simulation_vs_float = compare_outputs(float_reference, simulation, reference_name="onnxruntime float",
                                              candidate_name=f"{toolkit} quantized simulation", atol=None,
                                              min_cosine=min_cosine)
        section["simulation_vs_float"] = {"cosine": simulation_vs_float.cosine, "passed": simulation_vs_float.passed}
    section["diagnosis"] = diagnose(float_ok, vs_simulation.passed if vs_simulation else None, toolkit,
                                    section.get("input_tensor"), section.get("vs_simulation"))
    # The conversion is judged on what the user gets: the library against float, by the same gates as the
    # simulation. Library = simulation is the target (LIBRARY_VS_SIMULATION_MIN_COSINE) and is reported with what
    # was measured when missed, not gated: the toolkit's simulation is not bit-exact with the NPU's integer
    # arithmetic (per-layer dumps show 1-step rounding differences from the first layer on, growing with depth).
    section["passed"] = float_ok
    section["library_equals_simulation"] = vs_simulation.passed if vs_simulation is not None else None
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
        step = float(spec.get("scale", 2.0 ** -float(spec.get("fl", 0))))
        zero = float(spec.get("zero_point", 0))
        grid = np.clip(grid, (info.min - zero) * step, (info.max - zero) * step)
    off = np.abs(grid - values)
    return {"dtype": dtype, "values": int(values.size), "changed_by_quantization": int(np.count_nonzero(off)),
            "max_change": float(off.max()) if off.size else 0.0, "identical_to_simulation": bool(not np.any(off)),
            "range": [float(values.min()), float(values.max())]}


def _in_steps(reference: dict, candidate: dict, outputs: list[dict]) -> list[float | None]:
    """Each output's max abs difference in units of its quantization step: the scale (affine), 2^-fl (fixed point),
    or the float16 spacing at the output's largest value (a float16 output); None when the card does not say."""
    steps = []
    for index, name in enumerate(reference):
        spec = outputs[index] if index < len(outputs) else {}
        ref = np.stack([np.asarray(v, np.float64) for v in reference[name]])
        diff = np.abs(ref - np.stack([np.asarray(v, np.float64) for v in candidate[name]]))
        if spec.get("scale"):
            steps.append(float(diff.max() / float(spec["scale"])))
        elif spec.get("fl") is not None:
            steps.append(float(diff.max() * 2.0 ** float(spec["fl"])))
        elif spec.get("dtype") == "float16":
            # float16 has no single step: its spacing at the output's largest value (1/1024 for probabilities)
            spacing = float(np.spacing(np.float16(np.abs(ref).max())))
            steps.append(float(diff.max() / spacing) if spacing else None)
        else:
            steps.append(None)
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
    if vs_simulation:
        steps = max((s or 0.0 for s in vs_simulation.get("max_abs_steps") or [0.0]), default=0.0)
        measured = (f"the library's outputs differ from {toolkit}'s quantized simulation (cosine "
                    f"{vs_simulation['cosine']:.6f}, max {steps:.1f} output steps)")
    else:
        measured = f"the library's outputs differ from {toolkit}'s simulation"
    if input_tensor is not None and not input_tensor["identical_to_simulation"]:
        return (f"the input tensor: {input_tensor['changed_by_quantization']} of {input_tensor['values']} input "
                f"values change by up to {input_tensor['max_change']:.3g} when the library quantizes them "
                f"({input_tensor['dtype']}), so it did not compute on the simulation's input; {measured}")
    if input_tensor is not None:
        return (f"inside the compiled graph: the input tensors were measured identical ({input_tensor['values']} "
                f"values, exact in {input_tensor['dtype']}), yet {measured}")
    return measured


def diagnose_layers(dumps: dict) -> str:
    """What the per-node dumps measured, in one sentence."""
    first, beyond = dumps.get("first_differing"), dumps.get("first_beyond_one_step")
    if first is None:
        return "per-layer dumps: every layer's output equals the simulation's on the dumped input"
    text = (f"per-layer dumps on {dumps.get('input')}: the first layer whose outputs differ is '{first['layer']}' "
            f"({first['op']}: "
            f"{first['differing']:.2%} of its values, max {first['max_abs_steps'] or 0:.1f} steps, cosine "
            f"{first['cosine']:.6f})")
    if beyond is not None and beyond is not first:
        text += (f"; the first beyond one step is '{beyond['layer']}' ({beyond['op']}, max "
                 f"{beyond['max_abs_steps']:.1f} steps on {beyond['differing']:.2%} of its values)")
    last = dumps["layers"][-1] if dumps.get("layers") else None
    if last is not None:
        text += f"; at '{last['layer']}' cosine {last['cosine']:.6f} with {last['differing']:.1%} of values differing"
    return text
