"""fuse_prelu (convert/onnx/rewrites.py), shared by the Caffe walk and the detector's open-shape graphs: what
onnxruntime computes on the rewritten graph equals what it computes on tf2onnx's five-op spelling."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgepad.convert.onnx.rewrites import fuse_prelu


def _prelu_graph(extra_outputs=(), shared_slope=False):
    """Two PReLUs spelled Relu(x) + Mul(Relu(Neg(x)), -alpha), as tf2onnx writes Keras 3's PReLU."""
    rng = np.random.default_rng(0)
    nodes, initializers = [], []
    tensor = "x"
    for i in range(2):
        slope = "slope0" if shared_slope else f"slope{i}"
        if not shared_slope or i == 0:
            initializers.append(numpy_helper.from_array(-rng.uniform(0.1, 0.5, (1, 1, 4)).astype(np.float32), slope))
        nodes += [helper.make_node("Relu", [tensor], [f"pos{i}"]), helper.make_node("Neg", [tensor], [f"neg{i}"]),
                  helper.make_node("Relu", [f"neg{i}"], [f"negrelu{i}"]),
                  helper.make_node("Mul", [f"negrelu{i}", slope], [f"scaled{i}"]),
                  helper.make_node("Add", [f"pos{i}", f"scaled{i}"], [f"y{i}"], name=f"add{i}")]
        tensor = f"y{i}"
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 3, 3, 4]) for name in ("y1", *extra_outputs)]
    graph = helper.make_graph(nodes, "prelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 3, 4])],
                              outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def _fused(model):
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return fuse_prelu(copy)


def test_each_prelu_becomes_one_node_computing_the_same():
    model = _prelu_graph(shared_slope=True)  # one slope constant used by both: each fused node gets its own
    fused = _fused(model)
    onnx.checker.check_model(fused)
    assert [n.op_type for n in fused.graph.node] == ["PRelu", "PRelu"]
    assert len({n.input[1] for n in fused.graph.node}) == 2  # a slope of its own each
    assert "slope0" not in {t.name for t in fused.graph.initializer}  # the shared constant, unused now
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(_run(fused, x)[0], _run(model, x)[0], atol=1e-6)


def test_a_pattern_whose_intermediate_is_a_graph_output_is_left_alone():
    model = _prelu_graph(extra_outputs=("pos0",))  # the first Relu's output is read by the caller
    fused = _fused(model)
    assert [n.op_type for n in fused.graph.node].count("PRelu") == 1  # only the second one
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, 3, 4)).astype(np.float32)
    for got, expected in zip(_run(fused, x), _run(model, x), strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-6)
