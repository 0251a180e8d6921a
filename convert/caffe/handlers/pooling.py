"""MaxPool, AveragePool, global pooling and spatial reductions -> Caffe Pooling."""
from __future__ import annotations

import math

import numpy as np

from ..graph import attributes
from ..net_builder import MAX_POOL_PAD_VALUE
from .padding import align_padding, crop_excess, set_2d, spatial_pads
from .registry import Conversion, NotExpressible, handles


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
    pads = spatial_pads(node, cx, kernel, strides, [1, 1])
    out_shape = cx.shape(node.output[0])

    def caffe_out(i, size, pad):
        return _caffe_pooled_size(size, kernel[i], strides[i], pad)

    value = MAX_POOL_PAD_VALUE if is_max else 0.0
    bottom, caffe_pads, excess = align_padding(cx, cx.bottom(node.input[0]), pads, value, caffe_out, out_shape[2:])
    pooled_shape = out_shape[:2] + [out_shape[2 + i] + excess[i] for i in range(2)]
    final = cx.top(node.output[0])
    correction = None if is_max else _average_correction(attrs, cx.net.shapes[bottom], cx.shape(node.input[0]),
                                                          kernel, strides, pads, caffe_pads, out_shape)
    plain = not any(excess) and correction is None
    top = final if plain else cx.net.new_blob(f"{final}_pooled", pooled_shape)
    layer = cx.net.layer("Pooling", [bottom], [top])
    param = layer.pooling_param
    param.pool = param.MAX if is_max else param.AVE
    set_2d(param, "kernel", kernel)
    set_2d(param, "stride", strides)
    set_2d(param, "pad", caffe_pads)
    if plain:
        cx.net.bind(node.output[0], final)
        return
    if correction is None:
        crop_excess(cx, top, excess, final)
    else:
        cropped = crop_excess(cx, top, excess, cx.net.new_blob(f"{final}_cropped", out_shape)) if any(excess) else top
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
    average = node.op_type == "GlobalAveragePool"
    layer.pooling_param.pool = layer.pooling_param.AVE if average else layer.pooling_param.MAX
    layer.pooling_param.global_pooling = True


def reduce_spatial(node, cx: Conversion, axes: list[int]):
    """A mean or max over H and W of an NCHW tensor is global pooling (tf2onnx's spelling of Keras' GAP)."""
    attrs = attributes(node)
    in_shape = cx.shape(node.input[0])
    if len(in_shape) != 4 or sorted(a % 4 for a in axes) != [2, 3] or node.op_type == "ReduceSum":
        raise NotExpressible(f"axes {axes} of {in_shape}: a mean or max over H and W, or a sum or mean over "
                             "the channels")
    out = cx.top(node.output[0])
    pooled = out if attrs.get("keepdims", 1) else cx.net.new_blob(f"{out}_pooled", in_shape[:2] + [1, 1])
    layer = cx.net.layer("Pooling", [cx.bottom(node.input[0])], [pooled])
    layer.pooling_param.pool = layer.pooling_param.AVE if node.op_type == "ReduceMean" else layer.pooling_param.MAX
    layer.pooling_param.global_pooling = True
    if pooled != out:
        cx.net.reshape(pooled, cx.shape(node.output[0]), top=out)
