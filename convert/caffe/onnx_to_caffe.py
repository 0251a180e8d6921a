"""ONNX (NCHW) -> Caffe prototxt + caffemodel, checked against onnxruntime with OpenCV's own Caffe importer.

The graph walk is here; each op's translation is a handler in caffe/handlers.py. Every node Caffe cannot
express is collected first and reported in one UnsupportedOpError, before anything is written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgepad.errors import UnsupportedOpError

from .graph import OnnxGraph
from .handlers import HANDLERS, Conversion, NotExpressible
from .net_builder import MissingBlobError, NetBuilder
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
    unconverted: set[str] = set()  # outputs of the nodes that could not be converted
    for node in graph.nodes:
        if node.op_type == "Constant" or (node.name and node.name in cx.fused):
            continue
        try:
            HANDLERS[node.op_type](node, cx)
        except NotExpressible as reason:
            problems.append((node, str(reason)))
            unconverted.update(node.output)
        except MissingBlobError as error:
            if error.tensor not in unconverted:
                raise  # no failed node explains it: a bug of ours, not the model's
            unconverted.update(node.output)  # downstream of a node reported already
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
