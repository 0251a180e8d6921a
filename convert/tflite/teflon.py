"""Which TFLite operations Mesa's Teflon delegate takes to the NPU, and which stay on the board's CPU.

From Mesa's `src/gallium/frontends/teflon/tfl_device.c` (`fill_operation`, main branch as read 2026-12; Mesa 24.1,
the first release with Teflon, took only CONV_2D, DEPTHWISE_CONV_2D and ADD). The delegate takes an operation only
when that function accepts it; everything else runs in the TFLite interpreter on the CPU, splitting the graph.
"""
from __future__ import annotations

TEFLON_SOURCE = "Mesa src/gallium/frontends/teflon/tfl_device.c (main, read 2026-12)"
TEFLON_OPS = {
    "CONV_2D": "fused activation none, RELU, or RELU6 where the output range is [0, 6]",
    "DEPTHWISE_CONV_2D": "fused activation none, RELU, or RELU6 where the output range is [0, 6]",
    "ADD": "",
    "SUB": "",
    "AVERAGE_POOL_2D": "",
    "MAX_POOL_2D": "",
    "CONCATENATION": "",
    "SPLIT": "",
    "PAD": "zero padding of height, width and channels only (no PADV2 constant)",
    "FULLY_CONNECTED": "integer (int8/uint8) input",
    "RESHAPE": "",
    "RELU": "",
    "ABS": "",
    "LOGISTIC": "",
    "TRANSPOSE": "",
    "STRIDED_SLICE": "",
}


def operation_table(ops: list[dict]) -> list[dict]:
    """One row per operation of the model ({'index', 'op_name'} as TFLite's interpreter lists them)."""
    rows = []
    for op in ops:
        name = op["op_name"]
        condition = TEFLON_OPS.get(name)
        rows.append({"index": int(op["index"]), "op": name, "teflon": condition is not None,
                     **({"condition": condition} if condition else {})})
    return rows


def summary(rows: list[dict]) -> dict:
    on_npu = [r for r in rows if r["teflon"]]
    on_cpu = sorted({r["op"] for r in rows if not r["teflon"]})
    return {"source": TEFLON_SOURCE, "operations": len(rows), "on_npu": len(on_npu), "on_cpu_ops": on_cpu}
