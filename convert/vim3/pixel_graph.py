"""The graph the NPU compiles takes image pixels as decoded (0..255, the card's channel order), not normalised values.

The card's mean and std go into the graph, so nothing is normalised or quantized on the CPU per frame and the input
tensor holds every pixel value exactly (uint8 scale 1 zero point 0, int16 fixed point, float16). Normalising
in a separate Sub/Mul layer would not do: with mean 127.5 every normalised pixel lies half-way between two steps of
any 8-bit grid over [-1, 1], so that layer's rounding (which the toolkit's simulation and the NPU may break
differently) would decide every value again. So the normalisation is folded into the first convolution:

    W' = W / std[c],  B' = B - sum(W * mean[c] / std[c])

which is exact except where the convolution reads its zero padding: in normalised space the padding is 0, i.e.
the pixel value `mean`, while the folded convolution pads raw pixels with 0. The difference is a constant map
(nonzero on the border only), added right after the convolution. A graph whose input does not go straight into one
Conv gets a per-channel Mul + Add instead (exact in float, with the rounding caveat above).
"""
from __future__ import annotations

import numpy as np

from edgepad.errors import ExportError

PIXEL_RANGE = (0.0, 255.0)


def pixel_input_graph(model, mean, std):
    """A copy of the NCHW ONNX model taking (1, C, H, W) pixels; returns (model, how) with how 'folded' or 'mul-add'."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    input_name = graph.input[0].name
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or not all(dims):
        raise ExportError(f"the NPU graph's input '{input_name}' has shape {dims}; expected a static (1, C, H, W)")
    channels = dims[1]
    if np.size(mean) not in (1, channels) or np.size(std) not in (1, channels):
        raise ExportError(f"the card's mean/std do not match the graph's {channels} input channels")
    mean = np.broadcast_to(np.asarray(mean, np.float64).ravel(), (channels,))
    std = np.broadcast_to(np.asarray(std, np.float64).ravel(), (channels,))

    consumers = [n for n in graph.node if input_name in n.input]
    conv = consumers[0] if len(consumers) == 1 and consumers[0].op_type == "Conv" else None
    if conv is not None and _attr(conv, "group", 1) == 1 and conv.input[1] in initializers and (
            len(conv.input) < 3 or conv.input[2] in initializers):
        _fold_into_conv(graph, conv, initializers, dims, mean, std)
        how = "folded"
    else:
        per_channel = (1, channels, 1, 1)
        scale = numpy_helper.from_array((1.0 / std).astype(np.float32).reshape(per_channel), "edgepad_pixel_scale")
        shift = numpy_helper.from_array((-mean / std).astype(np.float32).reshape(per_channel), "edgepad_pixel_shift")
        graph.initializer.extend([scale, shift])
        scaled, normalised = "edgepad_pixels_scaled", "edgepad_pixels_normalised"
        for node in consumers:
            node.input[:] = [normalised if i == input_name else i for i in node.input]
        nodes = [onnx.helper.make_node("Mul", [input_name, scale.name], [scaled], name="edgepad_pixel_mul"),
                 onnx.helper.make_node("Add", [scaled, shift.name], [normalised], name="edgepad_pixel_add")]
        for node in reversed(nodes):
            graph.node.insert(0, node)
        how = "mul-add"
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    return model, how


def _attr(node, name, default):
    import onnx

    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _fold_into_conv(graph, conv, initializers, dims, mean, std) -> None:
    import onnx
    from onnx import numpy_helper

    weights = numpy_helper.to_array(initializers[conv.input[1]]).astype(np.float64)  # (O, C, kh, kw)
    bias = (numpy_helper.to_array(initializers[conv.input[2]]).astype(np.float64) if len(conv.input) > 2
            else np.zeros(weights.shape[0]))
    folded_w = weights / std[None, :, None, None]
    folded_b = bias - np.einsum("ocij,c->o", weights, mean / std)
    correction = _padding_correction(conv, folded_w, dims, mean)
    w_name, b_name = f"{conv.name or 'conv'}_edgepad_pixel_w", f"{conv.name or 'conv'}_edgepad_pixel_b"
    graph.initializer.extend([numpy_helper.from_array(folded_w.astype(np.float32), w_name),
                              numpy_helper.from_array(folded_b.astype(np.float32), b_name)])
    conv.input[:] = [conv.input[0], w_name, b_name]
    if correction is None:
        return
    output = conv.output[0]
    inner = f"{output}_edgepad_unpadded"
    conv.output[0] = inner
    c_name = f"{conv.name or 'conv'}_edgepad_padding"
    graph.initializer.append(numpy_helper.from_array(correction.astype(np.float32)[None], c_name))
    index = list(graph.node).index(conv)
    graph.node.insert(index + 1, onnx.helper.make_node("Add", [inner, c_name], [output], name=f"{c_name}_add"))


def _padding_correction(conv, folded_w, dims, mean):
    """What the folded conv misses where a tap reads padding: + W' * mean at those taps, per output position."""
    _, _, height, width = dims
    kh, kw = folded_w.shape[2:]
    if _attr(conv, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ExportError(f"conv '{conv.name}': auto_pad is not supported for folding the input normalisation")
    top, left, bottom, right = _attr(conv, "pads", [0, 0, 0, 0])
    if not any((top, left, bottom, right)):
        return None
    sy, sx = _attr(conv, "strides", [1, 1])
    dy, dx = _attr(conv, "dilations", [1, 1])
    out_h = (height + top + bottom - dy * (kh - 1) - 1) // sy + 1
    out_w = (width + left + right - dx * (kw - 1) - 1) // sx + 1
    oy, ox = np.arange(out_h), np.arange(out_w)
    correction = np.zeros((folded_w.shape[0], out_h, out_w))
    per_tap = np.einsum("ocij,c->oij", folded_w, mean)  # (O, kh, kw): what a tap adds when it reads `mean`
    for i in range(kh):
        rows_out = ((oy * sy - top + i * dy) < 0) | ((oy * sy - top + i * dy) >= height)
        for j in range(kw):
            cols_out = ((ox * sx - left + j * dx) < 0) | ((ox * sx - left + j * dx) >= width)
            padded = rows_out[:, None] | cols_out[None, :]
            correction += per_tap[:, i, j, None, None] * padded[None]
    return correction
