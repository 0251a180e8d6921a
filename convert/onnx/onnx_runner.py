"""Run an ONNX model with onnxruntime as a reference: graph optimisations off, one input at a time."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def onnx_session(model):
    """An InferenceSession with optimisations off, so a parity check sees the graph as written."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    data = model if isinstance(model, (str, bytes)) else model.SerializeToString()
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def run_onnx(model, inputs: Sequence[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """{output name: [output for each input]} for batch-1 inputs."""
    session = onnx_session(model)
    input_name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    results: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for x in inputs:
        for name, value in zip(names, session.run(None, {input_name: x}), strict=True):
            results[name].append(value)
    return results
