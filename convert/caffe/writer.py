"""Write a Caffe net as the usual pair: model.prototxt (structure, text) and model.caffemodel (weights, binary)."""
from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format

from . import caffe_pb2


def write_caffe(net: caffe_pb2.NetParameter, prototxt: Path, caffemodel: Path) -> None:
    structure = caffe_pb2.NetParameter()
    structure.CopyFrom(net)
    for layer in structure.layer:
        del layer.blobs[:]
    prototxt.write_text(text_format.MessageToString(structure))
    # The weights file lists every layer (name, type, bottoms, tops, blobs) as BVLC Caffe writes it: readers
    # match weights to layers by name, and some (the NPU toolkit) take a file without layers for the
    # pre-2015 V1 format.
    weights = caffe_pb2.NetParameter(name=net.name)
    for layer in net.layer:
        copy = weights.layer.add(name=layer.name, type=layer.type)
        copy.bottom.extend(layer.bottom)
        copy.top.extend(layer.top)
        copy.blobs.extend(layer.blobs)
    caffemodel.write_bytes(weights.SerializeToString())
