"""The on-board time the toolkit's own performance model estimates for a graph (an estimate, not a measurement).

VeriSilicon's OpenVX driver carries an architecture performance model (libNNArchPerf / libArchModelSw). With
NN_EXT_SHOW_PERF=1 it prints, when the graph is verified, the NPU configuration it models (e.g. `FreqInMHZ`) and
one block per NN/TP operation ending in `CycleCount: N`, whose output size is `FinalOutImageX/Y/Z`. Operations that
run on the shader cores (e.g. a softmax) are not in it. The emulator's own run time says nothing about the board.
"""
from __future__ import annotations

import re

SHOW_PERF_ENV = {"NN_EXT_SHOW_PERF": "1"}
_FIELD = re.compile(r"^(FreqInMHZ|FinalOutImageX|FinalOutImageY|FinalOutImageZ|CycleCount):\s*([0-9.]+)", re.M)


def estimate_from_log(text: str, target: str) -> dict | None:
    """Per-operation and total estimated time from the performance model's printout, or None without one."""
    frequency_mhz = None
    operations: list[dict] = []
    output: dict[str, int] = {}
    for name, value in _FIELD.findall(text):
        if name == "FreqInMHZ" and frequency_mhz is None:
            frequency_mhz = float(value)
        elif name.startswith("FinalOutImage"):
            output[name[-1]] = int(float(value))
        elif name == "CycleCount":
            operations.append({"index": len(operations), "output_xyz": [output.get(k) for k in "XYZ"],
                               "cycles": int(float(value))})
            output = {}
    if not operations or not frequency_mhz:
        return None
    for operation in operations:
        operation["ms"] = round(operation["cycles"] / (frequency_mhz * 1e3), 4)
    total = sum(o["cycles"] for o in operations)
    return {
        "estimate": True,
        "source": "VeriSilicon architecture performance model (libNNArchPerf, NN_EXT_SHOW_PERF=1) for " + target,
        "frequency_mhz": frequency_mhz,
        "total_cycles": total,
        "ms_per_inference": round(total / (frequency_mhz * 1e3), 4),
        "operations": operations,
        "note": ("an estimate by the toolkit's model of the NPU at the frequency it assumes, NN/TP operations only "
                 "(shader operations such as softmax are not counted); not a measurement on a board"),
    }
