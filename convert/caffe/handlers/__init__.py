"""ONNX op -> Caffe layers, one small function per op type, grouped by kind. Importing this package fills
HANDLERS (op type -> function)."""
from . import (  # noqa: F401  (they register)
    activations,
    convolution,
    elementwise,
    layout,
    linear,
    normalization,
    pooling,
    reduction,
    resize,
    unary,
)
from .registry import HANDLERS, Conversion, NotExpressible, handles

__all__ = ["HANDLERS", "Conversion", "NotExpressible", "handles"]
