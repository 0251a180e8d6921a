"""ReduceMean, ReduceMax and ReduceSum: over H and W as global pooling, over the channels as a fixed-weight 1x1
Convolution (or InnerProduct for [N, C]). Caffe's own Reduction layer reduces every axis from its `axis` to the
end, and OpenCV 4's Caffe importer has no Reduction layer, so it is never written."""
from __future__ import annotations

import numpy as np

from ..graph import attributes
from .pooling import reduce_spatial
from .registry import Conversion, handles


def _axes(node, cx: Conversion) -> list[int] | None:
    axes = attributes(node).get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = cx.constant(node, 1, "axes").tolist()
    return None if axes is None else [int(a) % len(cx.shape(node.input[0])) for a in axes]


@handles("ReduceMean", "ReduceMax", "ReduceSum")
def reduce(node, cx: Conversion):
    axes = _axes(node, cx)
    in_shape = cx.shape(node.input[0])
    if axes == [1] and node.op_type != "ReduceMax" and len(in_shape) in (2, 4):
        _reduce_channels(node, cx, in_shape)
        return
    reduce_spatial(node, cx, axes or [])


def _reduce_channels(node, cx: Conversion, in_shape: list[int]):
    channels = in_shape[1]
    weight = 1.0 / channels if node.op_type == "ReduceMean" else 1.0
    out = cx.top(node.output[0])
    keepdims = bool(attributes(node).get("keepdims", 1))
    kept_shape = [in_shape[0], 1] + in_shape[2:]
    reduced = out if keepdims else cx.net.new_blob(f"{out}_reduced", kept_shape)
    cx.net.shapes[reduced] = kept_shape
    bottom = cx.bottom(node.input[0])
    if len(in_shape) == 4:
        layer = cx.net.layer("Convolution", [bottom], [reduced],
                             blobs=(np.full((1, channels, 1, 1), weight, np.float32),))
        param = layer.convolution_param
        param.num_output, param.bias_term, param.kernel_h, param.kernel_w = 1, False, 1, 1
    else:
        layer = cx.net.layer("InnerProduct", [bottom], [reduced], blobs=(np.full((1, channels), weight, np.float32),))
        layer.inner_product_param.num_output = 1
        layer.inner_product_param.bias_term = False
    if reduced != out:
        cx.net.reshape(reduced, cx.shape(node.output[0]), top=out)


