"""Keras model -> ONNX with tf2onnx: static batch-1 input, readable names, checked, simplified only if it still
matches."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from edgepad.errors import ExportError, ShapeError

from ..parity import compare_outputs
from .onnx_runner import run_onnx

DEFAULT_OPSET = 13  # Caffe- and NPU-friendly (Clip with inputs, no Resize-18 surprises), read by every toolkit
ONNX_INPUT_NAME = "input"


@dataclass
class OnnxExport:
    model: object  # onnx.ModelProto
    input_name: str
    input_shape: list[int]  # as the ONNX graph takes it (NCHW or NHWC)
    output_names: list[str]
    simplified: bool
    warnings: list[str] = field(default_factory=list)


def static_input_shape(model, input_shape: tuple[int, int, int] | None, source: str) -> tuple[int, int, int]:
    """(H, W, C) of the model's single input, fixed by --input-shape where the model leaves it open."""
    if len(model.inputs) != 1:
        raise ShapeError(f"{source}: the model has {len(model.inputs)} inputs; edgepad converts single-input models")
    declared = tuple(model.inputs[0].shape)[1:]
    if len(declared) != 3:
        raise ShapeError(f"{source}: input shape {list(declared)} is not an image (H, W, C)")
    if input_shape is None:
        if any(d is None for d in declared):
            raise ShapeError(
                f"{source}: the model's input has open dimensions {_shape_text(declared)}; pass --input-shape H,W,C "
                "(the NPU needs static shapes), e.g. --input-shape 112,112,3"
            )
        return tuple(int(d) for d in declared)
    if len(input_shape) != len(declared):
        given = ",".join(map(str, input_shape))
        raise ShapeError(f"{source}: --input-shape {given} has {len(input_shape)} dimensions; the model's input "
                         f"{_shape_text(declared)} has {len(declared)}")
    for want, have in zip(input_shape, declared, strict=True):
        if have is not None and int(have) != want:
            raise ShapeError(
                f"{source}: --input-shape {','.join(map(str, input_shape))} does not fit the model's input "
                f"{_shape_text(declared)}"
            )
    return input_shape


def export_onnx(keras_model, hwc: tuple[int, int, int], names: list[str], layout: str,
                opset: int = DEFAULT_OPSET) -> OnnxExport:
    """Export with tf2onnx, check, rename inputs/outputs, and simplify if the simplified graph still matches."""
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec((1, *hwc), tf.float32, name=ONNX_INPUT_NAME)]

    def forward(x):
        return keras_model(x, training=False)

    nchw = [f"{ONNX_INPUT_NAME}:0"] if layout == "nchw" else None
    try:
        proto, _ = tf2onnx.convert.from_function(
            tf.function(forward), input_signature=spec, opset=opset, inputs_as_nchw=nchw
        )
    except Exception as error:  # tf2onnx raises many kinds; all mean "this graph did not export"
        raise ExportError(f"tf2onnx could not export the model: {type(error).__name__}: {error}") from error

    readable = [_readable(n) for n in names]
    if len(proto.graph.output) != len(readable):
        raise ExportError(f"tf2onnx wrote {len(proto.graph.output)} outputs for the model's {len(readable)}")
    _rename_value(proto, proto.graph.input[0].name, ONNX_INPUT_NAME)
    for output, name in zip(list(proto.graph.output), readable, strict=True):
        _rename_value(proto, output.name, name)
    proto.producer_name = "edgepad"
    check(proto)

    shape = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    export = OnnxExport(proto, ONNX_INPUT_NAME, shape, readable, simplified=False)
    simplify_if_equal(export)
    return export


def check(proto) -> None:
    import onnx

    try:
        onnx.checker.check_graph(proto.graph)
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"the exported ONNX graph is invalid: {str(error).splitlines()[0]}") from error


def simplify_if_equal(export: OnnxExport) -> None:
    """onnx-simplifier folds constants and shape ops; keep its graph only if it computes the same."""
    import onnxsim

    try:
        simplified, ok = onnxsim.simplify(export.model)
    except Exception as error:  # onnxsim failures are not fatal: the unsimplified graph is valid
        export.warnings.append(f"onnx-simplifier failed ({type(error).__name__}); kept the unsimplified graph")
        return
    if not ok:
        export.warnings.append("onnx-simplifier could not validate its graph; kept the unsimplified graph")
        return
    rng = np.random.default_rng(0)
    probes = [rng.uniform(-1, 1, export.input_shape).astype(np.float32) for _ in range(2)]
    before = run_onnx(export.model, probes)
    after = run_onnx(simplified, probes)
    if compare_outputs(before, after, reference_name="onnx", candidate_name="simplified onnx").passed:
        check(simplified)
        export.model = simplified
        export.simplified = True
    else:
        export.warnings.append("onnx-simplifier changed the outputs; kept the unsimplified graph")


def _rename_value(proto, old: str, new: str) -> None:
    if old == new:
        return
    graph = proto.graph
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]


def _readable(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "output"


def _shape_text(dims) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"
