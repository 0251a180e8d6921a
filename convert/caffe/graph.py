"""A read-only view of an ONNX graph for the Caffe handlers: constants, static shapes, consumers, attributes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepad.errors import ExportError, ShapeError


@dataclass
class OnnxGraph:
    model: object  # onnx.ModelProto, shape-inferred
    constants: dict[str, np.ndarray]
    shapes: dict[str, list[int]]
    consumers: dict[str, list]  # tensor name -> nodes reading it
    opset: int
    folded: frozenset = frozenset()  # output names of the nodes folded into constants at load

    @classmethod
    def load(cls, model) -> "OnnxGraph":
        import onnx
        from onnx import numpy_helper

        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            model = onnx.load(str(model))
        else:
            model = onnx.ModelProto.FromString(model.SerializeToString())  # rewrites must not touch the caller's
        from .rewrites import fuse_prelu

        model = fuse_prelu(model)
        try:
            model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        except Exception as error:  # onnx raises InferenceError and plain RuntimeErrors alike
            raise ExportError(f"ONNX shape inference failed: {str(error).splitlines()[0]}") from error
        graph = model.graph
        constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute:
                constants[node.output[0]] = _constant_value(node)
        shapes: dict[str, list[int]] = {}
        for value in list(graph.input) + list(graph.value_info) + list(graph.output):
            dims = value.type.tensor_type.shape.dim
            if value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
                shapes[value.name] = [d.dim_value for d in dims]
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        folded = _fold_constants(graph, constants, opset)
        for name, array in constants.items():
            shapes[name] = list(array.shape)
        consumers: dict[str, list] = {}
        for node in graph.node:
            if node.output[0] in folded:
                continue
            for name in node.input:
                consumers.setdefault(name, []).append(node)
        return cls(model, constants, shapes, consumers, opset, frozenset(folded))

    @property
    def nodes(self):
        """The nodes that compute from the input (constant subgraphs are folded into `constants`)."""
        return [node for node in self.model.graph.node if not node.output or node.output[0] not in self.folded]

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.model.graph.input if i.name not in self.constants]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.model.graph.output]

    def shape(self, name: str) -> list[int]:
        if name not in self.shapes:
            raise ShapeError(f"ONNX tensor '{name}' has no static shape after shape inference; "
                             "export with a fixed input shape (--input-shape H,W,C)")
        return self.shapes[name]

    def constant(self, name: str) -> np.ndarray | None:
        return self.constants.get(name) if name else None

    def is_constant(self, name: str) -> bool:
        return name in self.constants


def attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _fold_constants(graph, constants: dict[str, np.ndarray], opset: int) -> set[str]:
    """Evaluate every node whose inputs are all constants (Unsqueeze of BatchNorm parameters, Reshape of weights,
    shape arithmetic) with onnx's reference evaluator, so handlers see one more constant instead of a node Caffe
    would have to compute. Returns the first output name of each folded node."""
    from onnx.reference import ReferenceEvaluator

    folded: set[str] = set()
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute:
            folded.add(node.output[0])
            continue
        inputs = [name for name in node.input if name]
        if (not inputs or node.domain not in ("", "ai.onnx") or node.op_type.startswith("Random")
                or any(name not in constants for name in inputs)
                or any(a.type in (a.GRAPH, a.GRAPHS) for a in node.attribute)):
            continue
        try:
            values = ReferenceEvaluator(_one_node_model(node, opset)).run(None, {n: constants[n] for n in inputs})
        except Exception:  # noqa: BLE001  (an op the evaluator lacks stays a node; its handler decides)
            continue
        for name, value in zip(node.output, values, strict=False):  # optional outputs may be absent
            if name:
                constants[name] = np.asarray(value)
        folded.add(node.output[0])
    return folded


def _one_node_model(node, opset: int):
    """`node` alone in a model of the graph's opset (the evaluator takes a bare node at the newest opset)."""
    from onnx import helper

    inputs = [helper.make_empty_tensor_value_info(name) for name in node.input if name]
    outputs = [helper.make_empty_tensor_value_info(name) for name in node.output if name]
    graph = helper.make_graph([node], "fold", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _constant_value(node) -> np.ndarray:
    from onnx import numpy_helper

    attribute = node.attribute[0]
    if attribute.name == "value":
        return numpy_helper.to_array(attribute.t)
    from onnx import helper

    return np.asarray(helper.get_attribute_value(attribute))
