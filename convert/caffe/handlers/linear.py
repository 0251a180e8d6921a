"""MatMul and Gemm with constant weights -> InnerProduct (with the following bias Add fused)."""
from __future__ import annotations

import numpy as np

from ..graph import attributes
from .registry import Conversion, NotExpressible, handles


def _fusable_bias(cx: Conversion, node, num_output: int):
    """A following Add of a constant (num_output,) vector: the bias tf2onnx splits off a Dense layer."""
    add = cx.only_consumer(node.output[0])
    if add is None or add.op_type != "Add":
        return None, None
    other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
    bias = cx.graph.constant(other)
    if bias is None or bias.size != num_output or bias.shape[-1:] != (num_output,):
        return None, None
    return add, bias.reshape(num_output)


def _inner_product(node, cx: Conversion, weights_out_in: np.ndarray, bias: np.ndarray | None):
    in_shape = cx.shape(node.input[0])
    add, fused_bias = (None, None) if bias is not None else _fusable_bias(cx, node, weights_out_in.shape[0])
    if fused_bias is not None:
        bias = fused_bias
        cx.fused.add(add.name)
    output = add.output[0] if add is not None else node.output[0]
    top = cx.top(output)
    blobs = (weights_out_in,) if bias is None else (weights_out_in, bias)
    layer = cx.net.layer("InnerProduct", [cx.bottom(node.input[0])], [top], blobs=blobs)
    layer.inner_product_param.num_output = weights_out_in.shape[0]
    layer.inner_product_param.bias_term = bias is not None
    layer.inner_product_param.axis = len(in_shape) - 1  # ONNX multiplies the last axis
    cx.net.bind(node.output[0], top)


@handles("MatMul")
def matmul(node, cx: Conversion):
    weights = cx.constant(node, 1, "the second operand")
    if weights.ndim != 2:
        raise NotExpressible("only a product with a constant matrix (Dense)")
    _inner_product(node, cx, np.ascontiguousarray(weights.T), None)


@handles("Gemm")
def gemm(node, cx: Conversion):
    attrs = attributes(node)
    if attrs.get("transA", 0):
        raise NotExpressible("transA=1")
    weights = cx.constant(node, 1, "B").astype(np.float32) * float(attrs.get("alpha", 1.0))
    weights = weights if attrs.get("transB", 0) else weights.T
    bias = None
    if len(node.input) > 2 and node.input[2]:
        c = cx.constant(node, 2, "C") * float(attrs.get("beta", 1.0))
        if c.size not in (1, weights.shape[0]):
            raise NotExpressible(f"C of shape {list(c.shape)} is not a bias vector")
        bias = np.broadcast_to(c.ravel(), (weights.shape[0],)).astype(np.float32)
    _inner_product(node, cx, np.ascontiguousarray(weights), bias)
