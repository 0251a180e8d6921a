"""Conv, ConvTranspose and Pad (folded into the convolution that follows it when it can be)."""
from __future__ import annotations

import numpy as np

from ..graph import attributes
from .padding import align_padding, crop_excess, set_2d, spatial_pads
from .registry import Conversion, NotExpressible, handles


@handles("Conv")
def conv(node, cx: Conversion):
    weights = cx.constant(node, 1, "the weights")
    if weights.ndim != 4:
        raise NotExpressible(f"{weights.ndim - 2}-D convolution; Caffe converts 2-D only")
    attrs = attributes(node)
    kernel = list(weights.shape[2:])
    strides = list(attrs.get("strides", [1, 1]))
    dilations = list(attrs.get("dilations", [1, 1]))
    bias = cx.constant(node, 2, "the bias") if len(node.input) > 2 and node.input[2] else None
    pads = spatial_pads(node, cx, kernel, strides, dilations)
    weights, pads = _symmetric_by_zero_taps(weights, pads, dilations)
    kernel = list(weights.shape[2:])
    out_shape = cx.shape(node.output[0])

    def caffe_out(i, size, pad):
        return (size + 2 * pad - (dilations[i] * (kernel[i] - 1) + 1)) // strides[i] + 1

    bottom, caffe_pads, excess = align_padding(cx, cx.bottom(node.input[0]), pads, 0.0, caffe_out, out_shape[2:])
    conv_shape = out_shape[:2] + [out_shape[2 + i] + excess[i] for i in range(2)]
    final = cx.top(node.output[0])
    top = final if not any(excess) else cx.net.new_blob(f"{final}_full", conv_shape)
    layer = cx.net.layer("Convolution", [bottom], [top], blobs=(weights,) if bias is None else (weights, bias))
    param = _convolution_param(layer, weights.shape[0], bias, int(attrs.get("group", 1)), kernel, strides, dilations)
    set_2d(param, "pad", caffe_pads)
    crop_excess(cx, top, excess, final)
    cx.net.bind(node.output[0], final)


def _symmetric_by_zero_taps(weights: np.ndarray, pads: list[int], dilations: list[int]):
    """Asymmetric padding (Keras 'same' with stride 2 pads only the end) made symmetric without extra layers:
    pad both sides by the larger amount and add zero taps to the kernel on the side padded less, so every
    window starts where ONNX's does and the output size is ONNX's. Zero taps add exact zeros."""
    pads = list(pads)
    for i in range(2):
        begin, end = pads[i], pads[2 + i]
        difference = abs(end - begin)
        if difference == 0 or difference % dilations[i]:
            continue  # a dilated kernel moves in steps of its dilation: left to explicit padding
        taps = [(0, 0)] * 4
        taps[2 + i] = (difference // dilations[i], 0) if end > begin else (0, difference // dilations[i])
        weights = np.pad(weights, taps)
        pads[i] = pads[2 + i] = max(begin, end)
    return weights, pads


@handles("ConvTranspose")
def conv_transpose(node, cx: Conversion):
    weights = cx.constant(node, 1, "the weights")
    if weights.ndim != 4:
        raise NotExpressible("only 2-D transposed convolution")
    attrs = attributes(node)
    group = int(attrs.get("group", 1))
    strides = list(attrs.get("strides", [1, 1]))
    dilations = list(attrs.get("dilations", [1, 1]))
    bias = cx.constant(node, 2, "the bias") if len(node.input) > 2 and node.input[2] else None
    in_shape, out_shape = cx.shape(node.input[0]), cx.shape(node.output[0])
    kernel = list(weights.shape[2:])
    # No padding in Caffe, then crop: the full transposed convolution contains every ONNX output window.
    full = [(in_shape[2 + i] - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1 for i in range(2)]
    total = [full[i] - out_shape[2 + i] for i in range(2)]
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    auto_pad = attrs.get("auto_pad", "NOTSET")
    begin = []
    for i in range(2):
        if auto_pad == "SAME_UPPER":
            begin.append(total[i] // 2)
        elif auto_pad == "SAME_LOWER":
            begin.append(total[i] - total[i] // 2)
        else:
            begin.append(pads[i])
        if total[i] < begin[i]:
            raise NotExpressible("output_padding beyond the end padding adds rows Caffe cannot compute")
    final = cx.top(node.output[0])
    needs_crop = any(full[i] != out_shape[2 + i] for i in range(2))
    top = cx.net.new_blob(f"{final}_full", out_shape[:2] + full) if needs_crop else final
    layer = cx.net.layer("Deconvolution", [cx.bottom(node.input[0])], [top],
                         blobs=(weights,) if bias is None else (weights, bias))
    _convolution_param(layer, weights.shape[1] * group, bias, group, kernel, strides, dilations)
    if needs_crop:
        blob = cx.net.crop(top, 2, begin[0], out_shape[2], top=None if full[1] != out_shape[3] else final)
        if full[1] != out_shape[3]:
            cx.net.crop(blob, 3, begin[1], out_shape[3], top=final)
    cx.net.bind(node.output[0], final)


@handles("Pad")
def pad(node, cx: Conversion):
    attrs = attributes(node)
    mode = attrs.get("mode", "constant")
    pads = [int(p) for p in (cx.constant(node, 1, "pads") if cx.graph.opset >= 11 else attrs["pads"])]
    value = 0.0
    if cx.graph.opset >= 11 and len(node.input) > 2 and node.input[2]:
        value = float(cx.constant(node, 2, "the pad value").ravel()[0])
    elif cx.graph.opset < 11:
        value = float(attrs.get("value", 0.0))
    if mode != "constant":
        raise NotExpressible(f"mode '{mode}'; Caffe can pad with a constant only")
    rank = len(pads) // 2
    if rank != 4 or any(pads[i] or pads[rank + i] for i in (0, 1)) or min(pads) < 0:
        raise NotExpressible(f"pads {pads}: only non-negative padding of the spatial axes of an NCHW tensor")
    spatial = [pads[2], pads[3], pads[6], pads[7]]
    consumers = cx.graph.consumers.get(node.output[0], [])
    foldable = value == 0.0 and consumers and node.output[0] not in cx.graph.output_names and all(
        c.op_type == "Conv" or (c.op_type == "AveragePool" and attributes(c).get("count_include_pad", 0))
        for c in consumers)
    if foldable:  # the consuming conv takes the padding (Caffe convolutions pad with zeros)
        cx.pending_pads[node.output[0]] = spatial
        cx.net.bind(node.output[0], cx.bottom(node.input[0]))
        return
    blob = cx.bottom(node.input[0])
    blob = cx.net.pad_constant(blob, 2, spatial[0], spatial[2], value)
    blob = cx.net.pad_constant(blob, 3, spatial[1], spatial[3], value)
    cx.net.bind(node.output[0], blob)


def _convolution_param(layer, num_output: int, bias, group: int, kernel, strides, dilations):
    """The convolution_param that Convolution and Deconvolution share."""
    param = layer.convolution_param
    param.num_output = num_output
    param.bias_term = bias is not None
    param.group = group
    set_2d(param, "kernel", kernel)
    set_2d(param, "stride", strides)
    if any(d != 1 for d in dilations):
        if dilations[0] != dilations[1]:
            raise NotExpressible(f"dilations {dilations} differ per axis; Caffe takes one dilation")
        param.dilation.append(int(dilations[0]))
    return param
