"""Shape and layout ops: Transpose -> Permute, Reshape/Flatten/Squeeze/Unsqueeze -> Reshape, Identity/Dropout removed."""
from __future__ import annotations

from ..graph import attributes
from .registry import Conversion, NotExpressible, handles


@handles("Transpose")
def transpose(node, cx: Conversion):
    rank = len(cx.shape(node.input[0]))
    order = list(attributes(node).get("perm", range(rank - 1, -1, -1)))
    if order == list(range(rank)):
        cx.net.bind(node.output[0], cx.bottom(node.input[0]))
        return
    layer = cx.net.layer("Permute", [cx.bottom(node.input[0])], [cx.top(node.output[0])])
    layer.permute_param.order.extend(order)


@handles("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def reshape(node, cx: Conversion):
    """Shape-only ops: one Reshape (or Flatten) to the shape ONNX inferred; none when the shape is unchanged."""
    in_shape, out_shape = cx.shape(node.input[0]), cx.shape(node.output[0])
    bottom = cx.bottom(node.input[0])
    if in_shape == out_shape and node.output[0] not in cx.graph.output_names:
        cx.net.bind(node.output[0], bottom)
        return
    if out_shape[:1] != in_shape[:1]:
        raise NotExpressible(f"reshape {in_shape} -> {out_shape} changes the batch axis")
    cx.net.reshape(bottom, out_shape, top=cx.top(node.output[0]))


@handles("Identity", "Dropout")
def identity(node, cx: Conversion):
    if len(node.output) > 1 and node.output[1] and cx.graph.consumers.get(node.output[1]):
        raise NotExpressible("the Dropout mask output is used")
    cx.net.bind(node.output[0], cx.bottom(node.input[0]))
