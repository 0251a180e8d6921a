"""Padding and output-size alignment shared by convolution and pooling: Caffe pads both sides equally
and rounds pooled sizes up; ONNX pads each side on its own and rounds down."""
from __future__ import annotations

import math
from typing import Callable

from ..graph import attributes
from .registry import Conversion, NotExpressible


def spatial_pads(node, cx: Conversion, kernel: list[int], strides: list[int], dilations: list[int]) -> list[int]:
    """ONNX pads (begin..., end...) with auto_pad resolved, plus any zero padding a Pad node left for us."""
    attrs = attributes(node)
    rank = len(kernel)
    in_shape = cx.shape(node.input[0])[2:]
    auto_pad = attrs.get("auto_pad", "NOTSET")
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
        pads = [a + b for a, b in zip(pads, extra, strict=True)]
    return pads


def align_padding(cx: Conversion, blob: str, pads: list[int], value: float,
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


def crop_excess(cx: Conversion, blob: str, excess: list[int], top: str) -> str:
    """Drop the trailing outputs Caffe's padding rule produced beyond ONNX's."""
    shape = cx.net.shapes[blob]
    axes = [i for i, e in enumerate(excess) if e > 0]
    for n, i in enumerate(axes):
        blob = cx.net.crop(blob, 2 + i, 0, shape[2 + i] - excess[i], top=top if n == len(axes) - 1 else None)
    return blob


def set_2d(param, prefix: str, values: list[int]) -> None:
    setattr(param, f"{prefix}_h", int(values[0]))
    setattr(param, f"{prefix}_w", int(values[1]))
