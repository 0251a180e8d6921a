"""Normalisations: LRN -> Caffe LRN (across channels), LpNormalization -> Normalize."""
from __future__ import annotations

import numpy as np

from ..graph import attributes
from .registry import Conversion, NotExpressible, handles


@handles("LRN")
def lrn(node, cx: Conversion):
    """ONNX LRN sums squares over `size` neighbouring channels, as Caffe's ACROSS_CHANNELS region does
    (Caffe's WITHIN_CHANNEL, a spatial window, has no ONNX op and is never written). OpenCV 4's Caffe importer
    ignores LRN's `k` (it looks for `bias`; measured: k=2 read as 1), so k is always written as 1:
    x / (k + a/n S)^b = k^-b * x / (1 + (a/k)/n S)^b, the factor k^-b a Scale layer after the LRN."""
    attrs = attributes(node)
    size = int(attrs["size"])
    if size % 2 == 0:
        raise NotExpressible(f"LRN size {size}: Caffe's window is centred, so only odd sizes are the same")
    if len(cx.shape(node.input[0])) != 4:
        raise NotExpressible("LRN of a tensor that is not NCHW")
    k, alpha, beta = float(attrs.get("bias", 1.0)), float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75))
    if k <= 0:
        raise NotExpressible(f"LRN bias {k:g}: only a positive bias can be factored out of the window sum")
    top = cx.top(node.output[0])
    normalized = top if k == 1.0 else cx.net.new_blob(f"{top}_lrn", cx.shape(node.output[0]))
    param = cx.net.layer("LRN", [cx.bottom(node.input[0])], [normalized]).lrn_param
    param.local_size = size
    param.alpha = alpha / k
    param.beta = beta
    param.norm_region = param.ACROSS_CHANNELS
    if normalized != top:
        cx.net.affine(normalized, k ** -beta, 0.0, top)


@handles("LpNormalization")
def lp_normalization(node, cx: Conversion):
    """x / ||x||_2 over the channels (an embedding's L2 normalisation): Caffe's Normalize (the SSD fork's layer,
    which OpenCV 4 reads; BVLC Caffe and the NPU toolkit's CaffeLoader do not have it), scale 1, eps 1e-10."""
    attrs = attributes(node)
    shape = cx.shape(node.input[0])
    axis, p = int(attrs.get("axis", -1)) % len(shape), int(attrs.get("p", 2))
    if p != 2 or axis != 1:
        raise NotExpressible(f"L{p} norm over axis {axis} of {shape}; Caffe's Normalize takes the L2 norm "
                             "over the channels (axis 1)")
    layer = cx.net.layer("Normalize", [cx.bottom(node.input[0])], [cx.top(node.output[0])],
                         blobs=(np.ones(1, np.float32),))
    param = layer.norm_param
    param.across_spatial = False
    param.channel_shared = True
    param.eps = 1e-10
