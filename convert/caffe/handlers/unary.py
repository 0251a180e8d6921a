"""Element-wise functions: Exp, Elu, Softplus (BNLL), Pow and Sqrt (Power), HardSigmoid and HardSwish.

Which readers take each layer written here: Exp, ELU, BNLL, Power, ReLU, Scale and Eltwise are BVLC Caffe
layers, and OpenCV 4's Caffe importer reads them all. The NPU toolkit's CaffeLoader ignores Power's scale and
shift, so Power is written with its exponent only and any affine part as a Scale layer."""
from __future__ import annotations

from ..graph import attributes
from .registry import Conversion, NotExpressible, handles


@handles("Exp")
def exp(node, cx: Conversion):
    param = cx.net.layer("Exp", [cx.bottom(node.input[0])], [cx.top(node.output[0])]).exp_param
    param.base = -1.0  # e


@handles("Elu")
def elu(node, cx: Conversion):
    layer = cx.net.layer("ELU", [cx.bottom(node.input[0])], [cx.top(node.output[0])])
    layer.elu_param.alpha = float(attributes(node).get("alpha", 1.0))


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
    layer = cx.net.layer("Power", [cx.bottom(node.input[0])], [cx.top(node.output[0])])
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


