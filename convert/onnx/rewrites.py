"""ONNX graph rewrites: patterns exporters spell with several ops that one op computes. Each rewrite keeps the
graph valid ONNX computing the same values. Used before the Caffe walk (Caffe has one PReLU layer) and on the
detector's open-shape graphs (one PRelu pass instead of five elementwise ones over PNet's largest tensors)."""
from __future__ import annotations

import numpy as np


def fuse_prelu(model):
    """Relu(x) + Mul(Relu(Neg(x)), c) -> PRelu(x, -c): how tf2onnx writes Keras 3's PReLU. In place; returns model.

    Only where the four intermediate tensors feed nothing else and are no graph output; each fused node gets a
    slope tensor of its own (named after its Add), and the constants left unused are dropped."""
    from onnx import helper, numpy_helper

    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    constants = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}

    def internal(tensor: str) -> bool:
        return tensor not in outputs and len(consumers.get(tensor, [])) == 1

    removed, added, slopes = set(), {}, set()
    for add in graph.node:
        if add.op_type != "Add" or len(add.input) != 2:
            continue
        first, second = (producers.get(n) for n in add.input)
        for relu, mul in ((first, second), (second, first)):
            if relu is None or mul is None or relu.op_type != "Relu" or mul.op_type != "Mul":
                continue
            slope_name = next((n for n in mul.input if n in constants), None)
            other = next((n for n in mul.input if n != slope_name), None)
            neg_relu = producers.get(other)
            neg = producers.get(neg_relu.input[0]) if neg_relu is not None and neg_relu.op_type == "Relu" else None
            if slope_name is None or neg is None or neg.op_type != "Neg" or neg.input[0] != relu.input[0]:
                continue
            if not all(internal(t) for t in (relu.output[0], mul.output[0], neg_relu.output[0], neg.output[0])):
                continue
            slope = -numpy_helper.to_array(constants[slope_name]).astype(np.float32)
            slope_tensor = numpy_helper.from_array(slope, f"{add.name or add.output[0]}_prelu_slope")
            graph.initializer.append(slope_tensor)
            fused = helper.make_node("PRelu", [relu.input[0], slope_tensor.name], [add.output[0]],
                                     name=f"{add.name}_prelu" if add.name else "")
            removed.update(id(n) for n in (relu, mul, neg_relu, neg))
            slopes.add(slope_name)
            added[id(add)] = fused
            break
    if not added:
        return model
    nodes = [added.get(id(n), n) for n in graph.node if id(n) not in removed]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input} | outputs
    for tensor in [t for t in graph.initializer if t.name in slopes and t.name not in used]:
        graph.initializer.remove(tensor)
    return model
