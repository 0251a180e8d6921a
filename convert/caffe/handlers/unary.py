"""Element-wise functions: Exp, Elu, Softplus (BNLL), Pow and Sqrt (Power or Eltwise), HardSigmoid and HardSwish.

All layers written here are BVLC Caffe layers, and OpenCV 4's Caffe importer reads them all. The NPU toolkit's
CaffeLoader (acuitylite 6.57.1, measured: readers.py) misreads some: it computes ELU with alpha 1 whatever the
file says, so ELU is written with alpha 1 and blended with a ReLU; it computes neither Power nor BNLL as Caffe
does, so x^2 is an Eltwise product and the rest are left to warnings."""
from __future__ import annotations

from ..graph import attributes
from .registry import Conversion, NotExpressible, handles


@handles("Exp")
def exp(node, cx: Conversion):
    param = cx.net.layer("Exp", [cx.bottom(node.input[0])], [cx.top(node.output[0])]).exp_param
    param.base = -1.0  # e


@handles("Elu")
def elu(node, cx: Conversion):
    """ELU_a(x) = (1 - a) * ReLU(x) + a * ELU_1(x): the ELU layer only ever with alpha 1, which every reader
    computes alike."""
    alpha = float(attributes(node).get("alpha", 1.0))
    bottom, top = cx.bottom(node.input[0]), cx.top(node.output[0])
    if alpha == 1.0:
        cx.net.layer("ELU", [bottom], [top]).elu_param.alpha = 1.0
        return
    shape = cx.net.shapes[bottom]
    unit = cx.net.new_blob(f"{top}_elu1", shape)
    cx.net.layer("ELU", [bottom], [unit]).elu_param.alpha = 1.0
    rectified = cx.net.new_blob(f"{top}_relu", shape)
    cx.net.layer("ReLU", [bottom], [rectified])
    cx.net.layer("Eltwise", [rectified, unit], [top]).eltwise_param.coeff.extend([1.0 - alpha, alpha])


@handles("Softplus")
def softplus(node, cx: Conversion):
    """log(1 + exp(x)) is Caffe's BNLL ("binomial normal log likelihood")."""
    cx.net.layer("BNLL", [cx.bottom(node.input[0])], [cx.top(node.output[0])])


@handles("Pow", "Sqrt")
def power(node, cx: Conversion):
    if node.op_type == "Sqrt":
        exponent = 0.5
    else:
        value = cx.constant(node, 1, "the exponent")
        if value.size != 1:
            raise NotExpressible(f"exponent of shape {list(value.shape)}; Caffe's Power takes one number")
        exponent = float(value.ravel()[0])
    bottom, top = cx.bottom(node.input[0]), cx.top(node.output[0])
    if exponent == 2.0:  # x * x: an Eltwise every reader computes (the toolkit misreads Power)
        layer = cx.net.layer("Eltwise", [bottom, bottom], [top])
        layer.eltwise_param.operation = layer.eltwise_param.PROD
        return
    layer = cx.net.layer("Power", [bottom], [top])
    layer.power_param.power = exponent


def _clipped_unit(cx: Conversion, bottom: str, alpha: float, beta: float, top: str) -> str:
    """clip(alpha * x + beta, 0, 1) from BVLC layers every reader takes: r = ReLU(alpha x + beta), then
    r - ReLU(r - 1) (ReLU6 would do it in one layer, but BVLC Caffe has no ReLU6)."""
    shape = cx.net.shapes[bottom]
    linear = cx.net.affine(bottom, alpha, beta, cx.net.new_blob(f"{top}_linear", shape))
    rectified = cx.net.new_blob(f"{top}_relu", shape)
    cx.net.layer("ReLU", [linear], [rectified])
    above = cx.net.affine(rectified, 1.0, -1.0, cx.net.new_blob(f"{top}_above", shape))
    excess = cx.net.new_blob(f"{top}_excess", shape)
    cx.net.layer("ReLU", [above], [excess])
    cx.net.shapes[top] = list(shape)
    cx.net.layer("Eltwise", [rectified, excess], [top]).eltwise_param.coeff.extend([1.0, -1.0])
    return top


@handles("HardSigmoid")
def hard_sigmoid(node, cx: Conversion):
    attrs = attributes(node)
    _clipped_unit(cx, cx.bottom(node.input[0]), float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5)),
                  cx.top(node.output[0]))


@handles("HardSwish")
def hard_swish(node, cx: Conversion):
    """x * clip(x / 6 + 1/2, 0, 1) (MobileNetV3)."""
    bottom, top = cx.bottom(node.input[0]), cx.top(node.output[0])
    gate = _clipped_unit(cx, bottom, 1.0 / 6.0, 0.5, cx.net.new_blob(f"{top}_gate", cx.net.shapes[bottom]))
    layer = cx.net.layer("Eltwise", [bottom, gate], [top])
    layer.eltwise_param.operation = layer.eltwise_param.PROD


