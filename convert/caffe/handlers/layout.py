"""Shape and layout ops: Transpose -> Permute, Reshape/Flatten/Squeeze/Unsqueeze -> Reshape, Identity/Dropout
removed, Tile -> Concat, Slice/Split -> Slice."""
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
    cx.net.reshape(bottom, out_shape, top=cx.top(node.output[0]))


@handles("Identity", "Dropout")
def identity(node, cx: Conversion):
    if len(node.output) > 1 and node.output[1] and cx.graph.consumers.get(node.output[1]):
        raise NotExpressible("the Dropout mask output is used")
    cx.net.bind(node.output[0], cx.bottom(node.input[0]))


@handles("Tile")
def tile(node, cx: Conversion):
    """Tile repeats the whole tensor along each axis: Concat of copies (how Keras 3 spells UpSampling2D)."""
    repeats = [int(r) for r in cx.constant(node, 1, "repeats")]
    blob = cx.bottom(node.input[0])
    shape = list(cx.shape(node.input[0]))
    axes = [axis for axis, count in enumerate(repeats) if count > 1]
    if not axes:
        cx.net.bind(node.output[0], blob)
        return
    if 0 in axes:
        raise NotExpressible("repeats along the batch axis")
    for n, axis in enumerate(axes):
        shape[axis] *= repeats[axis]
        top = cx.top(node.output[0]) if n == len(axes) - 1 else cx.net.new_blob(f"{blob}_tiled", shape)
        cx.net.shapes[top] = list(shape)
        cx.net.layer("Concat", [blob] * repeats[axis], [top]).concat_param.axis = axis
        blob = top
    cx.net.bind(node.output[0], blob)


@handles("Slice")
def slice_(node, cx: Conversion):
    """Slice with step 1 along any axes but the batch: Caffe Slice layers (two-way cuts, see NetBuilder.crop)."""
    in_shape = cx.shape(node.input[0])
    if cx.graph.opset < 10:
        attrs = attributes(node)
        starts = list(attrs["starts"])
        axes, steps = list(attrs.get("axes", range(len(starts)))), [1] * len(starts)
    else:
        starts = cx.constant(node, 1, "starts").tolist()  # the end follows from the inferred output shape
        given = len(node.input) > 3 and node.input[3]
        axes = cx.constant(node, 3, "axes").tolist() if given else list(range(len(starts)))
        given = len(node.input) > 4 and node.input[4]
        steps = cx.constant(node, 4, "steps").tolist() if given else [1] * len(starts)
    if any(step != 1 for step in steps):
        raise NotExpressible(f"steps {steps}: Caffe's Slice cuts contiguous ranges only")
    blob = cx.bottom(node.input[0])
    out_shape = cx.shape(node.output[0])
    changed = []
    for start, axis in zip(starts, axes, strict=True):
        axis %= len(in_shape)
        if out_shape[axis] == in_shape[axis]:
            continue
        size = in_shape[axis]
        begin = min(max(start + size if start < 0 else start, 0), size)
        changed.append((axis, begin))
    if any(axis == 0 for axis, _ in changed):
        raise NotExpressible("a slice of the batch axis")
    for n, (axis, begin) in enumerate(changed):
        last = n == len(changed) - 1
        blob = cx.net.crop(blob, axis, begin, out_shape[axis], top=cx.top(node.output[0]) if last else None)
    cx.net.bind(node.output[0], blob)


@handles("Split")
def split(node, cx: Conversion):
    """Split into consecutive parts: each part cut out of the input by its own Slice layers."""
    rank = len(cx.shape(node.input[0]))
    axis = int(attributes(node).get("axis", 0)) % rank
    if axis == 0:
        raise NotExpressible("a split of the batch axis")
    blob = cx.bottom(node.input[0])
    begin = 0
    for output in node.output:
        length = cx.shape(output)[axis]
        if output:
            part = cx.net.crop(blob, axis, begin, length, top=cx.top(output))
            cx.net.bind(output, part)
        begin += length
