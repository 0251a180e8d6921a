"""Resize and Upsample by integer factors, as fixed-weight Deconvolutions."""
from __future__ import annotations

import math

import numpy as np

from ..graph import attributes
from .padding import set_2d
from .registry import Conversion, NotExpressible, handles


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


@handles("Resize", "Upsample")
def resize(node, cx: Conversion):
    """Integer upscaling as a Deconvolution with fixed weights, one group per channel: nearest repeats each pixel
    (a kernel of ones), linear spreads it with the bilinear kernel over edge-padded input, then crops."""
    attrs = attributes(node)
    mode = attrs.get("mode", "nearest")
    transform = attrs.get("coordinate_transformation_mode",
                          "half_pixel" if node.op_type == "Resize" else "asymmetric")
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
        nearest = attrs.get("nearest_mode", "round_prefer_floor")
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
    set_2d(param, "kernel", kernel.shape[2:])
    set_2d(param, "stride", factors)
    set_2d(param, "pad", pads)
