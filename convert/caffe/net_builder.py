"""Builds a Caffe NetParameter layer by layer: blob names for ONNX tensors, unique layer names, weight blobs,
and the few multi-layer patterns several handlers share (crop, constant padding, edge padding).

Invariant the handlers rely on: every Caffe blob has exactly the shape of the ONNX tensor it stands for, so the
ONNX shapes from shape inference describe the Caffe net too.
"""
from __future__ import annotations

import re

import numpy as np

from . import caffe_pb2

# Max pooling ignores padding; padding with this stands in for -inf without overflowing float32 arithmetic.
MAX_POOL_PAD_VALUE = -3.0e38


def blob_name(onnx_name: str) -> str:
    """A Caffe-friendly name: tf2onnx names carry '/', ':' and '.', which some Caffe readers split on."""
    name = re.sub(r":0$", "", onnx_name)
    return re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "blob"


def _packed_floats(array: np.ndarray) -> bytes:
    """BlobProto.data (field 5, packed float32) as wire bytes: parsing them is C-speed, where extending the field
    from a Python list costs seconds and gigabytes for a VGG-size layer."""
    payload = np.ascontiguousarray(array, "<f4").tobytes()
    length, varint = len(payload), bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        varint.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([5 << 3 | 2]) + bytes(varint) + payload


class NetBuilder:
    def __init__(self, name: str, output_tensors: list[str]):
        self.net = caffe_pb2.NetParameter(name=name)
        self.blobs: dict[str, str] = {}  # ONNX tensor -> Caffe blob
        self.shapes: dict[str, list[int]] = {}  # Caffe blob -> shape
        self._used: set[str] = set()
        self.output_blobs = {t: self._unique(blob_name(t)) for t in output_tensors}

    # --- names -----------------------------------------------------------------------------------------------
    def _unique(self, base: str) -> str:
        name, i = base, 1
        while name in self._used:
            i += 1
            name = f"{base}_{i}"
        self._used.add(name)
        return name

    def new_blob(self, hint: str, shape: list[int]) -> str:
        name = self._unique(blob_name(hint))
        self.shapes[name] = list(shape)
        return name

    def top(self, tensor: str, shape: list[int]) -> str:
        """The blob that will hold ONNX tensor `tensor` (graph outputs keep their reserved names)."""
        name = self.output_blobs.get(tensor) or self._unique(blob_name(tensor))
        self.blobs[tensor] = name
        self.shapes[name] = list(shape)
        return name

    def bind(self, tensor: str, blob: str) -> None:
        """ONNX tensor `tensor` is held by an existing blob (ops Caffe does not need, fused ops)."""
        self.blobs[tensor] = blob

    def blob(self, tensor: str) -> str:
        return self.blobs[tensor]

    # --- layers ----------------------------------------------------------------------------------------------
    def layer(self, type_: str, bottoms: list[str], tops: list[str], name: str | None = None,
              blobs: tuple[np.ndarray, ...] = ()) -> caffe_pb2.LayerParameter:
        layer = self.net.layer.add(name=name or tops[0], type=type_)
        if name and name not in tops:
            self._used.add(name)
        layer.bottom.extend(bottoms)
        layer.top.extend(tops)
        for array in blobs:
            blob = layer.blobs.add()
            blob.shape.dim.extend(int(d) for d in np.shape(array))
            blob.MergeFromString(_packed_floats(np.asarray(array)))
        return layer

    def input(self, tensor: str, shape: list[int]) -> str:
        top = self.top(tensor, shape)
        layer = self.layer("Input", [], [top])
        layer.input_param.shape.add().dim.extend(shape)
        return top

    # --- shared patterns -------------------------------------------------------------------------------------
    def crop(self, blob: str, axis: int, start: int, length: int, top: str | None = None) -> str:
        """blob[..., start:start+length, ...] along `axis`: Slice layers (Caffe has no strided crop), one cut
        each, the part cut off consumed by a Silence layer, since an unread top would become a net output.
        (Two-way Slices only: the NPU toolkit's Caffe reader mis-wires three-way ones.)"""
        shape = self.shapes[blob]
        if start == 0 and length == shape[axis]:
            return blob
        kept_shape = list(shape)
        kept_shape[axis] = length
        kept = top or self.new_blob(f"{blob}_crop", kept_shape)
        self.shapes[kept] = kept_shape
        if start > 0:
            rest_shape = list(shape)
            rest_shape[axis] -= start
            last = start + length == shape[axis]
            rest = kept if last else self.new_blob(f"{kept}_rest", rest_shape)
            blob = self._cut(blob, axis, start, [self.new_blob(f"{kept}_head", []), rest], keep=1)
            if last:
                return kept
        return self._cut(blob, axis, length, [kept, self.new_blob(f"{kept}_tail", [])], keep=0)

    def _cut(self, blob: str, axis: int, point: int, tops: list[str], keep: int) -> str:
        layer = self.layer("Slice", [blob], tops, name=self._unique(f"{tops[keep]}_slice"))
        layer.slice_param.axis = axis
        layer.slice_param.slice_point.append(point)
        self.layer("Silence", [tops[1 - keep]], [], name=self._unique(f"{tops[keep]}_silence"))
        return tops[keep]

    def pad_constant(self, blob: str, axis: int, before: int, after: int, value: float = 0.0) -> str:
        """Pad `blob` along `axis` with `value`: a constant slab made from one slice of the input times 0 plus
        `value`, then Concat. Plain BVLC layers, since Caffe has no Pad layer."""
        if before == 0 and after == 0:
            return blob
        shape = self.shapes[blob]
        parts = []
        for count in (before, after):
            if count == 0:
                parts.append(None)
                continue
            piece = self.crop(blob, axis, 0, 1)
            slab = self.affine(piece, 0.0, value, self.new_blob(f"{blob}_padvalue", self.shapes[piece]))
            parts.append(self._repeat(slab, axis, count))
        padded_shape = list(shape)
        padded_shape[axis] += before + after
        padded = self.new_blob(f"{blob}_padded", padded_shape)
        bottoms = [p for p in (parts[0], blob, parts[1]) if p is not None]
        self.layer("Concat", bottoms, [padded]).concat_param.axis = axis
        return padded

    def pad_edge(self, blob: str, axis: int, count: int = 1) -> str:
        """Repeat the first and last slice of `blob` along `axis` `count` times (ONNX Resize's clamping)."""
        shape = self.shapes[blob]
        first = self.crop(blob, axis, 0, 1)
        last = self.crop(blob, axis, shape[axis] - 1, 1)
        padded_shape = list(shape)
        padded_shape[axis] += 2 * count
        padded = self.new_blob(f"{blob}_edge", padded_shape)
        bottoms = [self._repeat(first, axis, count), blob, self._repeat(last, axis, count)]
        self.layer("Concat", bottoms, [padded]).concat_param.axis = axis
        return padded

    def affine(self, blob: str, scale: float, shift: float, top: str) -> str:
        """scale * blob + shift as a per-channel Scale layer (the values repeated per channel). Not Power: the NPU
        toolkit's Caffe reader ignores Power's scale and shift."""
        shape = self.shapes[blob]
        axis = 1 if len(shape) > 1 else 0
        channels = shape[axis]
        blobs = [np.full(channels, scale, np.float32)] + ([np.full(channels, shift, np.float32)] if shift else [])
        self.shapes[top] = list(shape)
        layer = self.layer("Scale", [blob], [top], blobs=tuple(blobs))
        layer.scale_param.axis = axis
        layer.scale_param.bias_term = bool(shift)
        return top

    def _repeat(self, blob: str, axis: int, count: int) -> str:
        if count == 1:
            return blob
        shape = list(self.shapes[blob])
        shape[axis] *= count
        repeated = self.new_blob(f"{blob}_x{count}", shape)
        self.layer("Concat", [blob] * count, [repeated]).concat_param.axis = axis
        return repeated

    def reshape(self, blob: str, shape: list[int], top: str | None = None) -> str:
        top = top or self.new_blob(f"{blob}_reshaped", shape)
        self.shapes[top] = list(shape)
        # Reshape with every dimension spelled out, not Flatten: the NPU toolkit's Caffe Flatten fails on its
        # open batch dimension, and explicit dimensions keep each blob's shape equal to its ONNX tensor's.
        self.layer("Reshape", [blob], [top]).reshape_param.shape.dim.extend(shape)
        return top

    # --- outputs ---------------------------------------------------------------------------------------------
    def finalize_outputs(self) -> dict[str, str]:
        """Make each ONNX output a blob that no layer reads, produced as top 0 of a layer of the same name.
        Caffe readers take the unread tops as the net's outputs; OpenCV's net.forward(name) looks layers up by
        name and returns their first top."""
        for tensor, wanted in self.output_blobs.items():  # outputs held by another blob (Identity, Pad, crops)
            current = self.blobs[tensor]
            producer = self.layer_by_top(current)
            if current != wanted or producer.name != wanted or producer.top[0] != wanted:
                self._expose(current, wanted)
                self.blobs[tensor] = wanted
        for tensor, wanted in self.output_blobs.items():  # outputs other layers also read
            if any(wanted in layer.bottom for layer in self.net.layer):
                self._expose(wanted, wanted)
        return dict(self.output_blobs)

    def _expose(self, current: str, wanted: str) -> None:
        """An identity Reshape named `wanted` from `current`, moving any blob or layer already named so."""
        if current == wanted or wanted in self.shapes:
            moved = self._rename_blob(wanted, self._unique(f"{wanted}_pre"))
            current = moved if current == wanted else current
        for layer in self.net.layer:
            if layer.name == wanted:
                layer.name = self._unique(f"{wanted}_pre")
        self.layer("Reshape", [current], [wanted]).reshape_param.shape.dim.extend(self.shapes[current])
        self.shapes[wanted] = list(self.shapes[current])

    def layer_by_top(self, blob: str):
        return next(l for l in reversed(self.net.layer) if blob in l.top)

    def _rename_blob(self, old: str, new: str) -> str:
        for layer in self.net.layer:
            layer.bottom[:] = [new if b == old else b for b in layer.bottom]
            layer.top[:] = [new if t == old else t for t in layer.top]
        self.shapes[new] = self.shapes[old]
        for tensor, blob in self.blobs.items():
            if blob == old:
                self.blobs[tensor] = new
        return new
