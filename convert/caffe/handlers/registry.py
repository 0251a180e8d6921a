"""The handler registry: one function per ONNX op type, registered with @handles.

A handler gets the node and the Conversion (the ONNX graph view and the NetBuilder). It raises NotExpressible
with the reason when the node's attributes are beyond what Caffe layers can compute exactly; the converter
collects those with the op types that have no handler and reports them all at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..graph import OnnxGraph
from ..net_builder import NetBuilder

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
