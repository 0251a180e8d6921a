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

    @classmethod
    def load(cls, model) -> "OnnxGraph":
        import onnx
        from onnx import numpy_helper

        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            model = onnx.load(str(model))
        else:
            model = onnx.ModelProto.FromString(model.SerializeToString())  # rewrites must not touch the caller's
        from ..onnx.rewrites import fuse_prelu

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
        for name, array in constants.items():
            shapes[name] = list(array.shape)
        consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                consumers.setdefault(name, []).append(node)
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        return cls(model, constants, shapes, consumers, opset)

    @property
    def nodes(self):
        return list(self.model.graph.node)

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
    """A node's attributes by name; ONNX's STRING attributes (bytes) as str."""
    from onnx import helper

    return {a.name: _text(helper.get_attribute_value(a)) for a in node.attribute}


def _text(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode() for v in value]
    return value


def _constant_value(node) -> np.ndarray:
    from onnx import numpy_helper

    attribute = node.attribute[0]
    if attribute.name == "value":
        return numpy_helper.to_array(attribute.t)
    from onnx import helper

    return np.asarray(helper.get_attribute_value(attribute))
