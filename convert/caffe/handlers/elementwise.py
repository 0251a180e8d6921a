"""Add, Sub, Mul, Div, BatchNormalization and Concat: Eltwise between computed tensors, Scale with
constants."""
from __future__ import annotations

import numpy as np

from ..graph import attributes
from .registry import Conversion, NotExpressible, handles


def scale_by_constant(cx: Conversion, bottom: str, scale: np.ndarray | None, bias: np.ndarray | None, top: str):
    """x * scale + bias with constants broadcast to x: a Caffe Scale layer over the axes the constants vary on
    (OpenCV has no Bias layer; a Scale with bias_term and ones does the addition)."""
    shape = cx.net.shapes[bottom]
    arrays = [np.broadcast_to(a, np.broadcast_shapes(np.shape(a), shape)) for a in (scale, bias) if a is not None]
    if any(list(a.shape) != list(shape) for a in arrays):
        raise NotExpressible(f"constant of shape {[list(np.shape(a)) for a in (scale, bias) if a is not None]} "
                             f"would enlarge the tensor {shape}")
    varying = [i for i in range(len(shape)) if any(np.ptp(a, axis=i).any() for a in arrays)]
    if not varying:  # one number for every element
        scalar_scale = float(np.ravel(scale)[0]) if scale is not None else 1.0
        cx.net.affine(bottom, scalar_scale, float(np.ravel(bias)[0]) if bias is not None else 0.0, top)
        return
    first, last = varying[0], varying[-1]
    index = tuple(slice(None) if first <= i <= last else 0 for i in range(len(shape)))
    blob_scale = (np.ascontiguousarray(np.broadcast_to(scale, shape)[index]) if scale is not None
                  else np.ones([shape[i] for i in range(first, last + 1)], np.float32))
    blobs = (blob_scale,) if bias is None else (blob_scale, np.ascontiguousarray(np.broadcast_to(bias, shape)[index]))
    layer = cx.net.layer("Scale", [bottom], [top], blobs=tuple(b.astype(np.float32) for b in blobs))
    layer.scale_param.axis = first
    layer.scale_param.num_axes = last - first + 1
    layer.scale_param.bias_term = bias is not None


@handles("Add", "Sub", "Mul", "Div")
def arithmetic(node, cx: Conversion):
    a, b = node.input[0], node.input[1]
    top = cx.top(node.output[0])
    constant_a, constant_b = cx.graph.constant(a), cx.graph.constant(b)
    if constant_a is not None and constant_b is not None:
        raise NotExpressible("both operands are constants (fold them before converting)")
    if constant_a is None and constant_b is None:
        _binary_tensors(node, cx, a, b, top)
        return
    x = cx.bottom(b if constant_a is not None else a)
    c = (constant_a if constant_a is not None else constant_b).astype(np.float32)
    op, constant_first = node.op_type, constant_a is not None
    if op == "Mul" and _fuse_following_add(node, cx, x, c):
        return
    if op == "Add":
        scale_by_constant(cx, x, None, c, top)
    elif op == "Mul":
        scale_by_constant(cx, x, c, None, top)
    elif op == "Sub":
        scale_by_constant(cx, x, -np.ones_like(c) if constant_first else None, c if constant_first else -c, top)
    elif not constant_first:  # x / c
        scale_by_constant(cx, x, (1.0 / c.astype(np.float64)).astype(np.float32), None, top)
    else:
        raise NotExpressible("division by a computed tensor")


def _fuse_following_add(node, cx: Conversion, x: str, scale: np.ndarray) -> bool:
    """Mul by a constant then Add of a constant (BatchNorm written out, as Caffe2's exports do): one Scale layer
    with bias instead of two."""
    add = cx.only_consumer(node.output[0])
    if add is None or add.op_type != "Add" or not add.name:
        return False
    other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
    bias = cx.graph.constant(other)
    if bias is None or cx.shape(add.output[0]) != cx.shape(node.output[0]):
        return False
    scale_by_constant(cx, x, scale, bias.astype(np.float32), cx.top(add.output[0]))
    cx.fused.add(add.name)
    return True


def _binary_tensors(node, cx: Conversion, a: str, b: str, top: str):
    shape_a, shape_b, out = cx.shape(a), cx.shape(b), cx.shape(node.output[0])
    if shape_a == shape_b == out:
        if node.op_type == "Div":
            raise NotExpressible("division of two computed tensors")
        layer = cx.net.layer("Eltwise", [cx.bottom(a), cx.bottom(b)], [top])
        if node.op_type == "Mul":
            layer.eltwise_param.operation = layer.eltwise_param.PROD
        elif node.op_type == "Sub":
            layer.eltwise_param.coeff.extend([1.0, -1.0])
        return
    if node.op_type != "Mul":
        raise NotExpressible(f"broadcast {node.op_type} of computed tensors {shape_a} and {shape_b}")
    # x * s with s of shape (N, C, 1, 1) (squeeze-and-excitation): Scale with the factors as second bottom.
    x, s = (a, b) if shape_a == out else (b, a)
    s_shape = cx.shape(s)
    kept = list(s_shape)
    while len(kept) > 1 and kept[-1] == 1:
        kept.pop()
    if len(s_shape) != len(out) or kept != out[:len(kept)]:
        raise NotExpressible(f"broadcast Mul of {shape_a} and {shape_b}")
    factors = cx.net.reshape(cx.bottom(s), kept) if kept != s_shape else cx.bottom(s)
    layer = cx.net.layer("Scale", [cx.bottom(x), factors], [top])
    layer.scale_param.axis = 0
    layer.scale_param.num_axes = len(kept)


@handles("BatchNormalization")
def batch_norm(node, cx: Conversion):
    gamma, beta = cx.constant(node, 1, "scale"), cx.constant(node, 2, "B")
    mean, var = cx.constant(node, 3, "mean"), cx.constant(node, 4, "var")
    eps = float(attributes(node).get("epsilon", 1e-5))
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    bias = beta - mean * scale
    shape = cx.shape(node.input[0])
    along_channels = [1, -1] + [1] * (len(shape) - 2)
    scale_by_constant(cx, cx.bottom(node.input[0]), scale.reshape(along_channels).astype(np.float32),
                       bias.reshape(along_channels).astype(np.float32), cx.top(node.output[0]))


@handles("Concat")
def concat(node, cx: Conversion):
    axis = int(attributes(node)["axis"]) % len(cx.shape(node.output[0]))
    bottoms = [cx.bottom(name) for name in node.input]
    cx.net.layer("Concat", bottoms, [cx.top(node.output[0])]).concat_param.axis = axis


@handles("Sum", "Mean")
def sum_mean(node, cx: Conversion):
    """n-ary Sum and Mean of same-shape computed tensors: one Eltwise SUM (Mean with coefficients 1/n)."""
    inputs = [name for name in node.input if name]
    out = cx.shape(node.output[0])
    if any(cx.shape(name) != out for name in inputs):
        raise NotExpressible(f"broadcast {node.op_type} of {[cx.shape(n) for n in inputs]}; Eltwise needs equal shapes")
    bottoms = [cx.bottom(name) for name in inputs]
    if len(bottoms) == 1:
        cx.net.bind(node.output[0], bottoms[0])
        return
    layer = cx.net.layer("Eltwise", bottoms, [cx.top(node.output[0])])
    if node.op_type == "Mean":
        layer.eltwise_param.coeff.extend([1.0 / len(bottoms)] * len(bottoms))
