"""ONNX (NCHW) -> Caffe prototxt + caffemodel, checked against onnxruntime with OpenCV's own Caffe importer.

The graph walk is here; each op's translation is a handler in caffe/handlers.py. Every node Caffe cannot
express is collected first and reported in one UnsupportedOpError, before anything is written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepad.errors import UnsupportedOpError

from ..parity import compare_outputs
from .graph import OnnxGraph
from .handlers import HANDLERS, Conversion, NotExpressible
from .net_builder import NetBuilder
from .readers import reader_warnings

PROTOTXT = "model.prototxt"
CAFFEMODEL = "model.caffemodel"


@dataclass
class CaffeNet:
    net: object  # caffe_pb2.NetParameter, weights included
    input_blob: str
    input_shape: list[int]
    outputs: dict[str, str]  # ONNX output name -> Caffe blob (OpenCV: net.forward(blob))
    warnings: list[str] = field(default_factory=list)  # layers some Caffe readers do not take as written

    @property
    def layer_types(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for layer in self.net.layer:
            counts[layer.type] = counts.get(layer.type, 0) + 1
        return counts


def onnx_to_caffe(model, name: str = "edgepad") -> CaffeNet:
    """Translate an ONNX model (path or ModelProto, static shapes, one input) into a Caffe net in memory."""
    graph = OnnxGraph.load(model)
    unsupported = unsupported_nodes(graph)
    if unsupported:
        raise UnsupportedOpError(_unsupported_message(unsupported))
    if len(graph.input_names) != 1:
        raise UnsupportedOpError(f"the ONNX graph has {len(graph.input_names)} inputs; Caffe conversion takes one")
    input_tensor = graph.input_names[0]
    cx = Conversion(graph, NetBuilder(name, graph.output_names))
    input_blob = cx.net.input(input_tensor, graph.shape(input_tensor))
    problems: list[tuple[object, str]] = []
    for node in graph.nodes:
        if node.op_type == "Constant" or (node.name and node.name in cx.fused):
            continue
        try:
            HANDLERS[node.op_type](node, cx)
        except NotExpressible as reason:
            problems.append((node, str(reason)))
        except KeyError:  # an input came from a node that failed above: that node is reported already
            if not problems:
                raise
    if problems:
        raise UnsupportedOpError(_unsupported_message(problems))
    outputs = cx.net.finalize_outputs()
    caffe = CaffeNet(cx.net.net, input_blob, graph.shape(input_tensor), outputs)
    caffe.warnings = reader_warnings(caffe.layer_types)
    return caffe


def unsupported_nodes(graph: OnnxGraph) -> list[tuple[object, str]]:
    return [(node, "no Caffe handler for this op type") for node in graph.nodes
            if node.op_type not in HANDLERS and node.op_type != "Constant"]


def _unsupported_message(problems) -> str:
    listed = "; ".join(f"{node.op_type} node '{node.name or node.output[0]}' ({reason})" for node, reason in problems)
    return (f"Caffe cannot express {len(problems)} node(s) of the ONNX graph: {listed}. "
            "Replace these layers in the Keras model or convert with --to onnx (without caffe)")


def write_caffe_files(caffe: CaffeNet, out_dir: Path) -> tuple[Path, Path]:
    from .writer import write_caffe

    prototxt, caffemodel = out_dir / PROTOTXT, out_dir / CAFFEMODEL
    write_caffe(caffe.net, prototxt, caffemodel)
    return prototxt, caffemodel


def caffe_target(ctx) -> dict:
    """The `caffe` target of `edgepad convert`: write model.prototxt/.caffemodel, check them with OpenCV."""
    from .opencv_runner import run_caffe

    with ctx.steps.step("Converting ONNX (NCHW) to Caffe"):
        caffe = onnx_to_caffe(ctx.onnx_nchw_path, name=ctx.card.get("name") or "edgepad")
        prototxt, caffemodel = write_caffe_files(caffe, ctx.work_dir)
        ctx.warnings.extend(caffe.warnings)
    with ctx.steps.step("Checking the Caffe model with OpenCV's Caffe importer against onnxruntime"):
        inputs = ctx.inputs_as("nchw")
        reference = ctx.onnx_nchw_outputs(inputs)
        candidate = run_caffe(prototxt, caffemodel, inputs, caffe.input_blob, caffe.outputs)
        candidate = {name: candidate[name] for name in reference}
        parity = compare_outputs(reference, candidate, reference_name=f"onnxruntime:{Path(ctx.onnx_nchw_path).name}",
                                 candidate_name=f"opencv:{PROTOTXT}", atol=ctx.options.atol)
        # Against Keras too, for the report: each step was checked against the one before it, so this can exceed
        # the tolerance only by the sum of two in-tolerance differences; that is a warning, not a failure.
        keras = {onnx_name: values for onnx_name, values in zip(reference, ctx.keras_outputs.values())}
        vs_keras = compare_outputs(keras, _shaped_like(candidate, keras), reference_name=ctx.reference_name,
                                   candidate_name=f"opencv:{PROTOTXT}", atol=ctx.options.atol)
    parity.raise_if_failed(str(ctx.options.model), hint="a Caffe layer computes something else than its ONNX op: "
                           "convert with --to onnx meanwhile, or allow more with --atol")
    if not vs_keras.passed:
        ctx.warnings.append(f"Caffe vs Keras: max abs {vs_keras.max_abs:.3g} exceeds --atol {ctx.options.atol:g} "
                            "(each step is within it)")
    ctx.card["targets"]["caffe"] = {
        "prototxt": PROTOTXT,
        "caffemodel": CAFFEMODEL,
        "input": caffe.input_blob,
        "input_shape": caffe.input_shape,
        "outputs": list(caffe.outputs.values()),
        "output_names": list(caffe.outputs),
        "layout": "nchw",
    }
    section = parity.to_json()
    section.update({"files": [PROTOTXT, CAFFEMODEL], "layers": caffe.layer_types, "vs_keras": vs_keras.to_json()})
    return section


def _shaped_like(candidate: dict, reference: dict) -> dict:
    """Keras outputs keep Keras' own shapes; OpenCV's have the ONNX graph's, equal in every element."""
    return {name: [np.reshape(c, np.shape(r)) for c, r in zip(candidate[name], reference[name])]
            for name in reference}
