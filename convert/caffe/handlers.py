"""One function per ONNX op type, registered with @handles: each turns a node into Caffe layers.

A handler gets the node and the Conversion (the ONNX graph view and the NetBuilder). It raises NotExpressible
with the reason when the node's attributes are beyond what Caffe layers can compute exactly; the converter
collects those with the op types that have no handler and reports them all at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .graph import OnnxGraph, attributes
from .net_builder import MAX_POOL_PAD_VALUE, NetBuilder

HANDLERS: dict[str, Callable] = {}


class NotExpressible(Exception):
    """This node's configuration has no exact Caffe equivalent (the message says why)."""


@dataclass
class Conversion:
    graph: OnnxGraph
    net: NetBuilder
    # ONNX tensor -> spatial (begin..., end...) zero padding a Pad node left for its consuming conv to absorb
    pending_pads: dict[str, list[int]] = field(default_factory=dict)
    fused: set[str] = field(default_factory=set)  # names of nodes another handler already emitted

    def shape(self, tensor: str) -> list[int]:
        return self.graph.shape(tensor)

    def bottom(self, tensor: str) -> str:
        if self.graph.is_constant(tensor):
            raise NotExpressible(f"input '{tensor}' is a constant where Caffe needs a computed blob")
        return self.net.blob(tensor)

    def top(self, tensor: str) -> str:
        return self.net.top(tensor, self.shape(tensor))

    def constant(self, node, index: int, what: str) -> np.ndarray:
        value = self.graph.constant(node.input[index]) if len(node.input) > index else None
        if value is None:
            raise NotExpressible(f"{what} (input {index}) must be a constant")
        return value

    def only_consumer(self, tensor: str):
        consumers = self.graph.consumers.get(tensor, [])
        if len(consumers) == 1 and tensor not in self.graph.output_names:
            return consumers[0]
        return None


def handles(*op_types: str):
    def register(function):
        for op_type in op_types:
            HANDLERS[op_type] = function
        return function
    return register


# --- shapes and padding ------------------------------------------------------------------------------------------
def _spatial_pads(node, cx: Conversion, kernel: list[int], strides: list[int], dilations: list[int]) -> list[int]:
    """ONNX pads (begin..., end...) with auto_pad resolved, plus any zero padding a Pad node left for us."""
    attrs = attributes(node)
    rank = len(kernel)
    in_shape = cx.shape(node.input[0])[2:]
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * rank)
        for i in range(rank):
            out = math.ceil(in_shape[i] / strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - in_shape[i])
            small, large = total // 2, total - total // 2
            pads[i], pads[i + rank] = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
    else:
        pads = list(attrs.get("pads", [0] * (2 * rank)))
    extra = cx.pending_pads.get(node.input[0])
    if extra is not None:
        pads = [a + b for a, b in zip(pads, extra)]
    return pads


def _align_padding(cx: Conversion, blob: str, pads: list[int], value: float,
                   caffe_out: Callable[[int, int, int], int], onnx_out: list[int]) -> tuple[str, list[int], list[int]]:
    """Caffe pads both sides equally. Use the begin pad (it fixes where windows start) and, where ONNX pads the
    end more, add the missing rows explicitly. Returns (blob, caffe pads, extra outputs to crop per axis)."""
    rank = len(pads) // 2
    caffe_pads = pads[:rank]
    excess = []
    for i in range(rank):
        axis = 2 + i
        size = cx.net.shapes[blob][axis]
        if caffe_out(i, size, caffe_pads[i]) < onnx_out[i]:
            blob = cx.net.pad_constant(blob, axis, 0, pads[rank + i] - pads[i], value)
            size = cx.net.shapes[blob][axis]
        excess.append(caffe_out(i, size, caffe_pads[i]) - onnx_out[i])
        if excess[-1] < 0:
            raise NotExpressible(f"Caffe would produce {excess[-1]} fewer outputs on spatial axis {i}")
    return blob, caffe_pads, excess


def _crop_excess(cx: Conversion, blob: str, excess: list[int], top: str) -> str:
    """Drop the trailing outputs Caffe's padding rule produced beyond ONNX's."""
    shape = cx.net.shapes[blob]
    axes = [i for i, e in enumerate(excess) if e > 0]
    for n, i in enumerate(axes):
        blob = cx.net.crop(blob, 2 + i, 0, shape[2 + i] - excess[i], top=top if n == len(axes) - 1 else None)
    return blob


def _set_2d(param, prefix: str, values: list[int]) -> None:
    setattr(param, f"{prefix}_h", int(values[0]))
    setattr(param, f"{prefix}_w", int(values[1]))


# --- convolution ----------------------------------------------------------------------------------------------
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
    pads = _spatial_pads(node, cx, kernel, strides, dilations)
    weights, pads = _symmetric_by_zero_taps(weights, pads, dilations)
    kernel = list(weights.shape[2:])
    out_shape = cx.shape(node.output[0])

    def caffe_out(i, size, pad):
        return (size + 2 * pad - (dilations[i] * (kernel[i] - 1) + 1)) // strides[i] + 1

    bottom, caffe_pads, excess = _align_padding(cx, cx.bottom(node.input[0]), pads, 0.0, caffe_out, out_shape[2:])
    conv_shape = out_shape[:2] + [out_shape[2 + i] + excess[i] for i in range(2)]
    final = cx.top(node.output[0])
    top = final if not any(excess) else cx.net.new_blob(f"{final}_full", conv_shape)
    layer = cx.net.layer("Convolution", [bottom], [top], blobs=(weights,) if bias is None else (weights, bias))
    param = layer.convolution_param
    param.num_output = weights.shape[0]
    param.bias_term = bias is not None
    param.group = int(attrs.get("group", 1))
    _set_2d(param, "kernel", kernel)
    _set_2d(param, "stride", strides)
    _set_2d(param, "pad", caffe_pads)
    if any(d != 1 for d in dilations):
        if dilations[0] != dilations[1]:
            raise NotExpressible(f"dilations {dilations} differ per axis; Caffe takes one dilation")
        param.dilation.append(int(dilations[0]))
    _crop_excess(cx, top, excess, final)
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
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
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
    full_top = cx.net.new_blob(f"{final}_full", out_shape[:2] + full)
    needs_crop = any(full[i] != out_shape[2 + i] for i in range(2))
    top = full_top if needs_crop else final
    cx.net.shapes[top] = out_shape[:2] + full
    layer = cx.net.layer("Deconvolution", [cx.bottom(node.input[0])], [top],
                         blobs=(weights,) if bias is None else (weights, bias))
    param = layer.convolution_param
    param.num_output = weights.shape[1] * group
    param.bias_term = bias is not None
    param.group = group
    _set_2d(param, "kernel", kernel)
    _set_2d(param, "stride", strides)
    if any(d != 1 for d in dilations):
        if dilations[0] != dilations[1]:
            raise NotExpressible(f"dilations {dilations} differ per axis")
        param.dilation.append(int(dilations[0]))
    if needs_crop:
        blob = cx.net.crop(top, 2, begin[0], out_shape[2], top=None if full[1] != out_shape[3] else final)
        if full[1] != out_shape[3]:
            cx.net.crop(blob, 3, begin[1], out_shape[3], top=final)
    cx.net.bind(node.output[0], final)


@handles("Pad")
def pad(node, cx: Conversion):
    attrs = attributes(node)
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
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
        cx.net.shapes.setdefault(cx.bottom(node.input[0]), cx.shape(node.input[0]))
        return
    blob = cx.bottom(node.input[0])
    blob = cx.net.pad_constant(blob, 2, spatial[0], spatial[2], value)
    blob = cx.net.pad_constant(blob, 3, spatial[1], spatial[3], value)
    cx.net.bind(node.output[0], blob)


# --- pooling -------------------------------------------------------------------------------------------------
def _caffe_pooled_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """BVLC Caffe's pooled size: rounded up, minus the last window if it starts inside the end padding."""
    out = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
    if pad > 0 and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@handles("MaxPool", "AveragePool")
def pool(node, cx: Conversion):
    attrs = attributes(node)
    kernel = list(attrs["kernel_shape"])
    if len(kernel) != 2:
        raise NotExpressible("only 2-D pooling")
    strides = list(attrs.get("strides", [1, 1]))
    if any(d != 1 for d in attrs.get("dilations", [1, 1])):
        raise NotExpressible("dilated pooling")
    if len(node.output) > 1 and node.output[1]:
        raise NotExpressible("the Indices output")
    is_max = node.op_type == "MaxPool"
    pads = _spatial_pads(node, cx, kernel, strides, [1, 1])
    out_shape = cx.shape(node.output[0])

    def caffe_out(i, size, pad):
        return _caffe_pooled_size(size, kernel[i], strides[i], pad)

    value = MAX_POOL_PAD_VALUE if is_max else 0.0
    bottom, caffe_pads, excess = _align_padding(cx, cx.bottom(node.input[0]), pads, value, caffe_out, out_shape[2:])
    pooled_shape = out_shape[:2] + [out_shape[2 + i] + excess[i] for i in range(2)]
    final = cx.top(node.output[0])
    correction = None if is_max else _average_correction(attrs, cx.net.shapes[bottom], cx.shape(node.input[0]),
                                                          kernel, strides, pads, caffe_pads, out_shape)
    plain = not any(excess) and correction is None
    top = final if plain else cx.net.new_blob(f"{final}_pooled", pooled_shape)
    layer = cx.net.layer("Pooling", [bottom], [top])
    param = layer.pooling_param
    param.pool = param.MAX if is_max else param.AVE
    _set_2d(param, "kernel", kernel)
    _set_2d(param, "stride", strides)
    _set_2d(param, "pad", caffe_pads)
    if plain:
        cx.net.bind(node.output[0], final)
        return
    if correction is None:
        _crop_excess(cx, top, excess, final)
    else:
        cropped = _crop_excess(cx, top, excess, cx.net.new_blob(f"{final}_cropped", out_shape)) if any(excess) else top
        cx.net.layer("Scale", [cropped], [final], blobs=(correction,)).scale_param.axis = 2
        cx.net.layer_by_top(final).scale_param.num_axes = 2
    cx.net.bind(node.output[0], final)


def _average_correction(attrs, caffe_in: list[int], onnx_in: list[int], kernel, strides, pads, caffe_pads,
                        out_shape) -> np.ndarray | None:
    """Caffe divides every window by its size including padding; ONNX (count_include_pad=0) by the number of
    real inputs. Returns the per-position ratio to multiply by, or None where they already agree."""
    if attrs.get("count_include_pad", 0):
        return None
    ratios = []
    for i in range(2):
        caffe_counts, onnx_counts = [], []
        for o in range(out_shape[2 + i]):
            start = o * strides[i] - caffe_pads[i]
            caffe_end = min(start + kernel[i], caffe_in[2 + i] + caffe_pads[i])
            caffe_counts.append(caffe_end - start)
            onnx_start = o * strides[i] - pads[i]
            onnx_counts.append(min(onnx_start + kernel[i], onnx_in[2 + i]) - max(onnx_start, 0))
        ratios.append(np.asarray(caffe_counts, np.float64) / np.asarray(onnx_counts, np.float64))
    ratio = np.outer(ratios[0], ratios[1])
    return None if np.allclose(ratio, 1.0) else ratio.astype(np.float32)


@handles("GlobalAveragePool", "GlobalMaxPool")
def global_pool(node, cx: Conversion):
    if len(cx.shape(node.input[0])) != 4:
        raise NotExpressible("only NCHW inputs")
    layer = cx.net.layer("Pooling", [cx.bottom(node.input[0])], [cx.top(node.output[0])])
    layer.pooling_param.pool = layer.pooling_param.AVE if node.op_type == "GlobalAveragePool" else layer.pooling_param.MAX
    layer.pooling_param.global_pooling = True


@handles("ReduceMean", "ReduceMax")
def reduce_spatial(node, cx: Conversion):
    """A mean or max over H and W of an NCHW tensor is global pooling (tf2onnx's spelling of Keras' GAP)."""
    attrs = attributes(node)
    axes = attrs.get("axes")
    if axes is None and len(node.input) > 1:
        axes = cx.constant(node, 1, "axes").tolist()
    in_shape = cx.shape(node.input[0])
    if len(in_shape) != 4 or sorted(a % 4 for a in (axes or [])) != [2, 3]:
        raise NotExpressible(f"axes {axes}: only a reduction over H and W of an NCHW tensor")
    out = cx.top(node.output[0])
    pooled = out if attrs.get("keepdims", 1) else cx.net.new_blob(f"{out}_pooled", in_shape[:2] + [1, 1])
    layer = cx.net.layer("Pooling", [cx.bottom(node.input[0])], [pooled])
    layer.pooling_param.pool = layer.pooling_param.AVE if node.op_type == "ReduceMean" else layer.pooling_param.MAX
    layer.pooling_param.global_pooling = True
    if pooled != out:
        cx.net.reshape(pooled, cx.shape(node.output[0]), top=out)


# --- activations ---------------------------------------------------------------------------------------------
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
        raise NotExpressible(f"Clip({low:g}, {high:g}); Caffe layers compute Clip(0, 6) (ReLU6) and Clip(0, inf) (ReLU)")


@handles("Neg")
def neg(node, cx: Conversion):
    cx.net.layer("Power", [cx.bottom(node.input[0])], [cx.top(node.output[0])]).power_param.scale = -1.0


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
    negated = cx.net.new_blob(f"{top}_neg", in_shape)
    cx.net.layer("Power", [bottom], [negated]).power_param.scale = -1.0
    negative = cx.net.new_blob(f"{top}_negrelu", in_shape)
    cx.net.layer("ReLU", [negated], [negative])
    scaled = cx.net.new_blob(f"{top}_negscaled", in_shape)
    _scale_by_constant(cx, negative, -np.ascontiguousarray(full), None, scaled)
    cx.net.layer("Eltwise", [positive, scaled], [top])


@handles("Softmax")
def softmax(node, cx: Conversion):
    rank = len(cx.shape(node.input[0]))
    default = -1 if cx.graph.opset >= 13 else 1
    axis = int(attributes(node).get("axis", default)) % rank
    if cx.graph.opset < 13 and axis != rank - 1:
        raise NotExpressible(f"opset {cx.graph.opset} Softmax over the flattened axes {axis}.. (not one axis)")
    cx.net.layer("Softmax", [cx.bottom(node.input[0])], [cx.top(node.output[0])]).softmax_param.axis = axis


# --- linear algebra ------------------------------------------------------------------------------------------
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


# --- element-wise ------------------------------------------------------------------------------------------
def _scale_by_constant(cx: Conversion, bottom: str, scale: np.ndarray | None, bias: np.ndarray | None, top: str):
    """x * scale + bias with constants broadcast to x: a Caffe Scale layer over the axes the constants vary on
    (OpenCV has no Bias layer; a Scale with bias_term and ones does the addition)."""
    shape = cx.net.shapes[bottom]
    arrays = [np.broadcast_to(a, np.broadcast_shapes(np.shape(a), shape)) for a in (scale, bias) if a is not None]
    if any(list(a.shape) != list(shape) for a in arrays):
        raise NotExpressible(f"constant of shape {[list(np.shape(a)) for a in (scale, bias) if a is not None]} "
                             f"would enlarge the tensor {shape}")
    varying = [i for i in range(len(shape)) if any(np.ptp(a, axis=i).any() for a in arrays)]
    if not varying:  # one number: Power computes shift + scale * x
        layer = cx.net.layer("Power", [bottom], [top])
        if scale is not None:
            layer.power_param.scale = float(np.ravel(scale)[0])
        if bias is not None:
            layer.power_param.shift = float(np.ravel(bias)[0])
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
    if op == "Add":
        _scale_by_constant(cx, x, None, c, top)
    elif op == "Mul":
        _scale_by_constant(cx, x, c, None, top)
    elif op == "Sub":
        _scale_by_constant(cx, x, -np.ones_like(c) if constant_first else None, c if constant_first else -c, top)
    elif not constant_first:  # x / c
        _scale_by_constant(cx, x, (1.0 / c.astype(np.float64)).astype(np.float32), None, top)
    else:
        raise NotExpressible("division by a computed tensor")


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
    _scale_by_constant(cx, cx.bottom(node.input[0]), scale.reshape(along_channels).astype(np.float32),
                       bias.reshape(along_channels).astype(np.float32), cx.top(node.output[0]))


@handles("Concat")
def concat(node, cx: Conversion):
    axis = int(attributes(node)["axis"]) % len(cx.shape(node.output[0]))
    bottoms = [cx.bottom(name) for name in node.input]
    cx.net.layer("Concat", bottoms, [cx.top(node.output[0])]).concat_param.axis = axis


# --- layout ----------------------------------------------------------------------------------------------
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


# --- resizing -------------------------------------------------------------------------------------------------
def _integer_factors(cx: Conversion, node) -> list[int]:
    in_shape, out_shape = cx.shape(node.input[0]), cx.shape(node.output[0])
    if len(in_shape) != 4 or in_shape[:2] != out_shape[:2]:
        raise NotExpressible(f"resize {in_shape} -> {out_shape}: only the spatial axes of an NCHW tensor")
    factors = []
    for i in (2, 3):
        if out_shape[i] % in_shape[i]:
            raise NotExpressible(f"resize {in_shape} -> {out_shape}: only integer scale factors")
        factors.append(out_shape[i] // in_shape[i])
    return factors


def _text(value, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else value


@handles("Resize", "Upsample")
def resize(node, cx: Conversion):
    """Integer upscaling as a Deconvolution with fixed weights, one group per channel: nearest repeats each pixel
    (a kernel of ones), linear spreads it with the bilinear kernel over edge-padded input, then crops."""
    attrs = attributes(node)
    mode = _text(attrs.get("mode"), "nearest")
    transform = _text(attrs.get("coordinate_transformation_mode"), "half_pixel" if node.op_type == "Resize" else "asymmetric")
    if node.op_type == "Upsample":  # Upsample's nearest takes floor(o / scale)
        transform, attrs["nearest_mode"] = "asymmetric", "floor"
    factors = _integer_factors(cx, node)
    channels = cx.shape(node.input[0])[1]
    out_shape = cx.shape(node.output[0])
    bottom, top = cx.bottom(node.input[0]), cx.top(node.output[0])
    if factors == [1, 1]:
        cx.net.bind(node.output[0], bottom)
        return
    if mode == "nearest":
        nearest = _text(attrs.get("nearest_mode"), "round_prefer_floor")
        repeats = (transform == "asymmetric" and nearest == "floor") or transform == "tf_half_pixel_for_nn" or (
            transform in ("half_pixel", "pytorch_half_pixel") and nearest.startswith("round"))
        if not repeats:
            raise NotExpressible(f"nearest resize with {transform}/{nearest} is not a pixel repeat")
        kernel = np.ones((channels, 1, factors[0], factors[1]), np.float32)
        _fixed_deconvolution(cx, bottom, top, kernel, factors, [0, 0])
        return
    if mode != "linear":
        raise NotExpressible(f"mode '{mode}'; nearest and linear only")
    if transform not in ("half_pixel", "pytorch_half_pixel", "asymmetric"):
        raise NotExpressible(f"linear resize with coordinate_transformation_mode '{transform}'")
    kernels, pads = [], []
    for f in factors:
        # Weight of input i at output o is max(0, 1 - |o - (i*f + shift)| / f); shift = (f-1)/2 for half-pixel.
        # The taps cover o - i*f in (shift - f, shift + f); the Caffe pad shifts that window to start at 0.
        shift = (f - 1) / 2 if transform != "asymmetric" else 0.0
        pad = int(math.ceil(f - 1 - shift))
        size = int(math.ceil(pad + shift + f - 1e-9))
        taps = np.array([max(0.0, 1 - abs(k - pad - shift) / f) for k in range(size)], np.float32)
        kernels.append(taps)
        pads.append(pad)
    kernel = np.ascontiguousarray(np.broadcast_to(np.outer(kernels[0], kernels[1]),
                                                  (channels, 1, len(kernels[0]), len(kernels[1]))))
    edged = cx.net.pad_edge(cx.net.pad_edge(bottom, 2), 3)
    full_shape = [out_shape[0], channels] + [
        (cx.net.shapes[edged][2 + i] - 1) * factors[i] + len(kernels[i]) - 2 * pads[i] for i in range(2)]
    full = cx.net.new_blob(f"{top}_full", full_shape)
    _fixed_deconvolution(cx, edged, full, kernel, factors, pads)
    rows = cx.net.crop(full, 2, factors[0], out_shape[2])
    cx.net.crop(rows, 3, factors[1], out_shape[3], top=top)
    cx.net.bind(node.output[0], top)


def _fixed_deconvolution(cx: Conversion, bottom: str, top: str, kernel: np.ndarray, factors, pads) -> None:
    layer = cx.net.layer("Deconvolution", [bottom], [top], blobs=(kernel,))
    param = layer.convolution_param
    param.num_output = kernel.shape[0]
    param.group = kernel.shape[0]
    param.bias_term = False
    _set_2d(param, "kernel", kernel.shape[2:])
    _set_2d(param, "stride", factors)
    _set_2d(param, "pad", pads)
