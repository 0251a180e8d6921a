"""Activations and Softmax: ReLU, LeakyReLU, Clip(0, 6) as ReLU6, PReLU, Sigmoid, TanH, Neg."""
from __future__ import annotations

import math

import numpy as np

from ..graph import attributes
from .elementwise import scale_by_constant
from .registry import Conversion, NotExpressible, handles


@handles("Relu")
def relu(node, cx: Conversion):
    cx.net.layer("ReLU", [cx.bottom(node.input[0])], [cx.top(node.output[0])])


@handles("LeakyRelu")
def leaky_relu(node, cx: Conversion):
    layer = cx.net.layer("ReLU", [cx.bottom(node.input[0])], [cx.top(node.output[0])])
    layer.relu_param.negative_slope = float(attributes(node).get("alpha", 0.01))


@handles("Clip")
def clip(node, cx: Conversion):
    attrs = attributes(node)
    if cx.graph.opset >= 11:
        low = cx.constant(node, 1, "min") if len(node.input) > 1 and node.input[1] else np.float32(-np.inf)
        high = cx.constant(node, 2, "max") if len(node.input) > 2 and node.input[2] else np.float32(np.inf)
    else:
        low, high = attrs.get("min", -np.inf), attrs.get("max", np.inf)
    low, high = float(np.ravel(low)[0]), float(np.ravel(high)[0])
    if low == 0.0 and high == 6.0:
        cx.net.layer("ReLU6", [cx.bottom(node.input[0])], [cx.top(node.output[0])])
    elif low == 0.0 and math.isinf(high):
        cx.net.layer("ReLU", [cx.bottom(node.input[0])], [cx.top(node.output[0])])
    else:
        raise NotExpressible(f"Clip({low:g}, {high:g}); Caffe layers compute Clip(0, 6) (ReLU6) and Clip(0, inf) "
                             "(ReLU)")


@handles("Neg")
def neg(node, cx: Conversion):
    cx.net.affine(cx.bottom(node.input[0]), -1.0, 0.0, cx.top(node.output[0]))


@handles("Sigmoid", "Tanh")
def sigmoid_tanh(node, cx: Conversion):
    cx.net.layer("Sigmoid" if node.op_type == "Sigmoid" else "TanH", [cx.bottom(node.input[0])],
                 [cx.top(node.output[0])])


@handles("PRelu")
def prelu(node, cx: Conversion):
    slope = cx.constant(node, 1, "the slope").astype(np.float32)
    in_shape = cx.shape(node.input[0])
    full = np.broadcast_to(slope, in_shape) if slope.ndim <= len(in_shape) else None
    if full is None:
        raise NotExpressible(f"slope shape {list(slope.shape)} does not broadcast to {in_shape}")
    bottom, top = cx.bottom(node.input[0]), cx.top(node.output[0])
    if np.all(full == full.ravel()[0]):
        cx.net.layer("ReLU", [bottom], [top]).relu_param.negative_slope = float(full.ravel()[0])
        return
    per_channel = full.reshape(in_shape[0], in_shape[1], -1)
    if len(in_shape) >= 2 and np.all(per_channel == per_channel[:1, :, :1]):
        cx.net.layer("PReLU", [bottom], [top], blobs=(per_channel[0, :, 0],))
        return
    # Slopes varying along other axes (Keras PReLU without shared_axes): x + (slope - 1) * min(x, 0),
    # written as ReLU(x) - slope * ReLU(-x) from layers that exist in Caffe.
    positive = cx.net.new_blob(f"{top}_pos", in_shape)
    cx.net.layer("ReLU", [bottom], [positive])
    negated = cx.net.affine(bottom, -1.0, 0.0, cx.net.new_blob(f"{top}_neg", in_shape))
    negative = cx.net.new_blob(f"{top}_negrelu", in_shape)
    cx.net.layer("ReLU", [negated], [negative])
    scaled = cx.net.new_blob(f"{top}_negscaled", in_shape)
    scale_by_constant(cx, negative, -np.ascontiguousarray(full), None, scaled)
    cx.net.layer("Eltwise", [positive, scaled], [top])


@handles("Softmax")
def softmax(node, cx: Conversion):
    """Opset 13 normalises one axis, as Caffe does. Opsets 1-12 normalise over all axes from `axis` on, flattened:
    the same as one axis when the others are all of size 1 (a classifier's [N, C, 1, 1] scores)."""
    shape = cx.shape(node.input[0])
    rank = len(shape)
    default = -1 if cx.graph.opset >= 13 else 1
    axis = int(attributes(node).get("axis", default)) % rank
    if cx.graph.opset < 13 and axis != rank - 1:
        longer = [i for i in range(axis, rank) if shape[i] != 1]
        if len(longer) > 1:
            raise NotExpressible(f"opset {cx.graph.opset} Softmax over the flattened axes {axis}.. of {shape} "
                                 "(more than one axis longer than 1; Caffe's Softmax normalises one axis)")
        axis = longer[0] if longer else axis
    cx.net.layer("Softmax", [cx.bottom(node.input[0])], [cx.top(node.output[0])]).softmax_param.axis = axis
