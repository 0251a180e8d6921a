"""Every ONNX op handler of the Caffe converter, on a tiny ONNX model made here, run by OpenCV 4's Caffe importer
and compared with onnxruntime; plus the guard that no registered handler goes without such a test."""
from __future__ import annotations

import re

import numpy as np
import pytest

from edgepad.convert.caffe.handlers import HANDLERS

from support.caffe_parity import opencv_vs_onnxruntime, random_inputs

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(7)


def weights(*shape, scale=0.5):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def model(nodes, input_shape, output_shapes, initializers=(), opset=13):
    """A one-input ONNX model; `output_shapes` maps output tensor names to shapes."""
    graph = helper.make_graph(
        nodes, "case",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in output_shapes.items()],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in initializers],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 8 if opset >= 13 else 4
    proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)  # fills in the output shapes
    onnx.checker.check_model(proto)
    return proto


def node(op, inputs, outputs, name=None, **attrs):
    return helper.make_node(op, inputs, outputs, name=name or f"{op}_{outputs[0]}", **attrs)


X4 = [1, 4, 9, 8]  # odd and even spatial sizes catch rounding and padding mistakes


def conv_case(pads, strides, group=1, dilations=(1, 1), bias=True, kernel=3, shape=X4, **extra):
    c = shape[1]
    inputs = ["x", "w"] + (["b"] if bias else [])
    out_channels = 6 if group == 1 else c
    inits = [("w", weights(out_channels, c // group, kernel, kernel))]
    inits += [("b", weights(out_channels))] if bias else []
    attrs = dict(kernel_shape=[kernel, kernel], strides=list(strides), dilations=list(dilations), group=group, **extra)
    if pads is not None:
        attrs["pads"] = list(pads)
    return model([node("Conv", inputs, ["y"], **attrs)], shape, {"y": None}, inits)


def resize_case(mode, transform, factor, nearest_mode=None):
    attrs = dict(mode=mode, coordinate_transformation_mode=transform)
    if nearest_mode:
        attrs["nearest_mode"] = nearest_mode
    scales = np.array([1, 1, factor, factor], np.float32)
    return model([node("Resize", ["x", "", "scales"], ["y"], **attrs)], [1, 3, 5, 4], {"y": None},
                 [("scales", scales)])


def pool_case(op, kernel, strides, pads=None, shape=X4, **extra):
    attrs = dict(kernel_shape=kernel, strides=strides, **extra)
    if pads is not None:
        attrs["pads"] = pads
    return model([node(op, ["x"], ["y"], **attrs)], shape, {"y": None})


def binary_const(op, constant, constant_first=False):
    inputs = ["c", "x"] if constant_first else ["x", "c"]
    return model([node(op, inputs, ["y"])], X4, {"y": None}, [("c", constant)])


def two_branch(op):
    """op applied to two computed tensors of the same shape."""
    return model([node("Relu", ["x"], ["a"]), node("Sigmoid", ["x"], ["b"]), node(op, ["a", "b"], ["y"])],
                 X4, {"y": None})


def squeeze_excite():
    """x * sigmoid(GAP(x)): a broadcast Mul of two computed tensors."""
    return model([node("GlobalAveragePool", ["x"], ["g"]), node("Sigmoid", ["g"], ["s"]),
                  node("Mul", ["x", "s"], ["y"])], X4, {"y": None})


def dense_head(kind):
    flat = [node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]), node("Reshape", ["t", "shape"], ["f"])]
    inits = [("shape", np.array([1, -1], np.int64))]
    k = 9 * 8 * 4
    if kind == "matmul_add":
        nodes = flat + [node("MatMul", ["f", "w"], ["m"]), node("Add", ["m", "b"], ["y"])]
        inits += [("w", weights(k, 5, scale=0.1)), ("b", weights(5))]
    else:
        nodes = flat + [node("Gemm", ["f", "w", "b"], ["y"], transB=1, alpha=0.5, beta=2.0)]
        inits += [("w", weights(5, k, scale=0.1)), ("b", weights(5))]
    return model(nodes + [node("Softmax", ["y"], ["p"])], X4, {"y": None, "p": None}, inits)


# (test id, op types it covers, model factory)
CASES = [
    ("conv_bias_same", {"Conv"}, lambda: conv_case([1, 1, 1, 1], [1, 1])),
    ("conv_stride2_asymmetric_pad", {"Conv"}, lambda: conv_case([0, 0, 1, 1], [2, 2], bias=False)),
    ("conv_pad_more_at_start", {"Conv"}, lambda: conv_case([2, 1, 0, 1], [2, 2])),
    ("conv_depthwise_dilated", {"Conv"}, lambda: conv_case([2, 2, 2, 2], [1, 1], group=4, dilations=(2, 2))),
    ("conv_dilated_asymmetric_pad", {"Conv"}, lambda: conv_case([0, 0, 1, 1], [1, 1], dilations=(2, 2))),
    ("conv_auto_pad_same_upper", {"Conv"}, lambda: conv_case(None, [2, 2], auto_pad="SAME_UPPER")),
    ("conv_transpose", {"ConvTranspose"}, lambda: model(
        [node("ConvTranspose", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
              output_padding=[1, 1])], X4, {"y": None}, [("w", weights(4, 3, 3, 3)), ("b", weights(3))])),
    ("conv_transpose_grouped", {"ConvTranspose"}, lambda: model(
        [node("ConvTranspose", ["x", "w"], ["y"], kernel_shape=[2, 2], strides=[2, 2], group=2)],
        X4, {"y": None}, [("w", weights(4, 2, 2, 2))])),
    ("pad_folded_into_conv", {"Pad", "Conv"}, lambda: model(
        [node("Pad", ["x", "pads"], ["p"]), node("Conv", ["p", "w"], ["y"], kernel_shape=[3, 3], strides=[2, 2])],
        X4, {"y": None}, [("pads", np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64)), ("w", weights(5, 4, 3, 3))])),
    ("pad_before_maxpool", {"Pad", "MaxPool"}, lambda: model(
        [node("Pad", ["x", "pads"], ["p"]), node("MaxPool", ["p"], ["y"], kernel_shape=[3, 3], strides=[2, 2])],
        X4, {"y": None}, [("pads", np.array([0, 0, 1, 0, 0, 0, 1, 2], np.int64))])),
    ("maxpool_same_asymmetric", {"MaxPool"}, lambda: pool_case("MaxPool", [3, 3], [2, 2], [0, 0, 1, 1])),
    ("maxpool_floor_on_odd_size", {"MaxPool"}, lambda: pool_case("MaxPool", [2, 2], [2, 2])),
    ("maxpool_symmetric_pad", {"MaxPool"}, lambda: pool_case("MaxPool", [3, 3], [2, 2], [1, 1, 1, 1])),
    ("averagepool_valid", {"AveragePool"}, lambda: pool_case("AveragePool", [3, 3], [2, 2])),
    ("averagepool_same_excludes_pad", {"AveragePool"}, lambda: pool_case("AveragePool", [3, 3], [2, 2], [0, 0, 1, 1])),
    ("averagepool_symmetric_excludes_pad", {"AveragePool"},
     lambda: pool_case("AveragePool", [3, 3], [1, 1], [1, 1, 1, 1])),
    ("averagepool_includes_pad", {"AveragePool"}, lambda: pool_case("AveragePool", [3, 3], [2, 2], [1, 1, 1, 1],
                                                                  count_include_pad=1)),
    ("maxpool_ceil_mode", {"MaxPool"}, lambda: pool_case("MaxPool", [3, 3], [2, 2], ceil_mode=1)),
    ("averagepool_ceil_mode", {"AveragePool"}, lambda: pool_case("AveragePool", [3, 3], [2, 2], ceil_mode=1)),
    ("global_pools", {"GlobalAveragePool", "GlobalMaxPool", "Add"}, lambda: model(
        [node("GlobalAveragePool", ["x"], ["a"]), node("GlobalMaxPool", ["x"], ["m"]), node("Add", ["a", "m"], ["y"])],
        X4, {"y": None})),
    ("reduce_mean_max", {"ReduceMean", "ReduceMax"}, lambda: model(
        [node("ReduceMean", ["x"], ["a"], axes=[2, 3], keepdims=0), node("ReduceMax", ["x"], ["m"], axes=[2, 3])],
        X4, {"a": None, "m": None})),
    ("relu", {"Relu"}, lambda: model([node("Relu", ["x"], ["y"])], X4, {"y": None})),
    ("leaky_relu", {"LeakyRelu"}, lambda: model([node("LeakyRelu", ["x"], ["y"], alpha=0.2)], X4, {"y": None})),
    ("clip_relu6", {"Clip"}, lambda: model([node("Clip", ["x", "lo", "hi"], ["y"])], X4, {"y": None},
                                          [("lo", np.float32(0)), ("hi", np.float32(6))])),
    ("clip_relu", {"Clip"},
     lambda: model([node("Clip", ["x", "lo"], ["y"])], X4, {"y": None}, [("lo", np.float32(0))])),
    ("sigmoid_tanh", {"Sigmoid", "Tanh"}, lambda: model(
        [node("Sigmoid", ["x"], ["s"]), node("Tanh", ["s"], ["y"])], X4, {"y": None})),
    ("neg", {"Neg"}, lambda: model([node("Neg", ["x"], ["y"])], X4, {"y": None})),
    ("prelu_per_channel", {"PRelu"}, lambda: model([node("PRelu", ["x", "s"], ["y"])], X4, {"y": None},
                                                  [("s", weights(4, 1, 1))])),
    ("prelu_per_element", {"PRelu"}, lambda: model([node("PRelu", ["x", "s"], ["y"])], X4, {"y": None},
                                                  [("s", weights(4, 9, 8))])),
    ("prelu_shared", {"PRelu"}, lambda: model([node("PRelu", ["x", "s"], ["y"])], X4, {"y": None},
                                             [("s", np.array([0.3], np.float32))])),
    ("keras3_prelu_pattern", {"Relu", "Neg", "Mul", "Add"}, lambda: model(
        [node("Relu", ["x"], ["r"]), node("Neg", ["x"], ["n"]), node("Relu", ["n"], ["rn"]),
         node("Mul", ["rn", "c"], ["m"]), node("Add", ["r", "m"], ["y"])], X4, {"y": None},
        [("c", -weights(1, 4, 1, 1))])),
    ("softmax_4d_axis1", {"Softmax"}, lambda: model([node("Softmax", ["x"], ["y"], axis=1)], X4, {"y": None})),
    ("softmax_4d_last", {"Softmax"}, lambda: model([node("Softmax", ["x"], ["y"])], X4, {"y": None})),
    ("dense_matmul_add", {"Transpose", "Reshape", "MatMul", "Add", "Softmax"}, lambda: dense_head("matmul_add")),
    ("dense_gemm", {"Transpose", "Reshape", "Gemm", "Softmax"}, lambda: dense_head("gemm")),
    ("matmul_last_axis_of_4d", {"MatMul"}, lambda: model([node("MatMul", ["x", "w"], ["y"])], X4, {"y": None},
                                                        [("w", weights(8, 3))])),
    ("add_per_channel_constant", {"Add"}, lambda: binary_const("Add", weights(4, 1, 1))),
    ("mul_per_channel_constant", {"Mul"}, lambda: binary_const("Mul", weights(1, 4, 1, 1))),
    ("mul_per_column_constant", {"Mul"}, lambda: binary_const("Mul", weights(8))),
    ("sub_constant_minus_x", {"Sub"}, lambda: binary_const("Sub", weights(4, 1, 1), constant_first=True)),
    ("sub_x_minus_scalar", {"Sub"}, lambda: binary_const("Sub", np.float32(0.7))),
    ("div_by_constant", {"Div"}, lambda: binary_const("Div", np.abs(weights(4, 1, 1)) + 0.5)),
    ("add_tensors", {"Add"}, lambda: two_branch("Add")),
    ("sub_tensors", {"Sub"}, lambda: two_branch("Sub")),
    ("mul_tensors", {"Mul"}, lambda: two_branch("Mul")),
    ("mul_squeeze_excite", {"Mul", "GlobalAveragePool", "Sigmoid"}, squeeze_excite),
    ("batchnorm", {"BatchNormalization"}, lambda: model(
        [node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], epsilon=1e-3)], X4, {"y": None},
        [("g", weights(4)), ("b", weights(4)), ("m", weights(4)), ("v", np.abs(weights(4)) + 0.5)])),
    ("concat_channels", {"Concat"}, lambda: model(
        [node("Relu", ["x"], ["a"]), node("Concat", ["x", "a"], ["y"], axis=1)], X4, {"y": None})),
    ("transpose_nhwc", {"Transpose"},
     lambda: model([node("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1])], X4, {"y": None})),
    ("flatten", {"Flatten"}, lambda: model([node("Flatten", ["x"], ["y"], axis=1)], X4, {"y": None})),
    ("squeeze_unsqueeze", {"GlobalAveragePool", "Squeeze", "Unsqueeze"}, lambda: model(
        [node("GlobalAveragePool", ["x"], ["g"]), node("Squeeze", ["g", "axes"], ["s"]),
         node("Unsqueeze", ["s", "axes1"], ["y"])], X4, {"s": None, "y": None},
        [("axes", np.array([2, 3], np.int64)), ("axes1", np.array([1], np.int64))])),
    ("identity_dropout", {"Identity", "Dropout"}, lambda: model(
        [node("Identity", ["x"], ["i"]), node("Dropout", ["i"], ["d"]), node("Relu", ["d"], ["y"])], X4, {"y": None})),
    ("tile_keras3_upsampling", {"Unsqueeze", "Tile", "Reshape"}, lambda: model(
        [node("Unsqueeze", ["x", "axes"], ["u"]), node("Tile", ["u", "reps"], ["t"]),
         node("Reshape", ["t", "shape"], ["y"])],
        X4, {"y": None}, [("axes", np.array([3], np.int64)), ("reps", np.array([1, 1, 1, 2, 1], np.int64)),
                          ("shape", np.array([1, 4, 18, 8], np.int64))])),
    ("identity_as_graph_output", {"Relu", "Identity"}, lambda: model(
        [node("Relu", ["x"], ["r"]), node("Identity", ["r"], ["y"])], X4, {"r": None, "y": None})),
    ("resize_nearest_x2", {"Resize"}, lambda: resize_case("nearest", "asymmetric", 2, "floor")),
    ("resize_nearest_half_pixel_x3", {"Resize"}, lambda: resize_case("nearest", "half_pixel", 3, "round_prefer_floor")),
    ("resize_bilinear_half_pixel_x2", {"Resize"}, lambda: resize_case("linear", "half_pixel", 2)),
    ("resize_bilinear_half_pixel_x3", {"Resize"}, lambda: resize_case("linear", "half_pixel", 3)),
    ("resize_bilinear_asymmetric_x2", {"Resize"}, lambda: resize_case("linear", "asymmetric", 2)),
    ("lrn_alexnet", {"LRN"}, lambda: model(
        [node("LRN", ["x"], ["y"], size=5, alpha=1e-2, beta=0.75, bias=1.0)], [1, 7, 5, 4], {"y": None})),
    ("lrn_bias_not_one", {"LRN"}, lambda: model(  # OpenCV ignores Caffe's k: the converter factors it out
        [node("LRN", ["x"], ["y"], size=3, alpha=0.3, beta=0.75, bias=2.0)], [1, 7, 5, 4], {"y": None})),
    ("sum_three_inputs", {"Sum"}, lambda: model(
        [node("Relu", ["x"], ["a"]), node("Sigmoid", ["x"], ["b"]), node("Sum", ["x", "a", "b"], ["y"])],
        X4, {"y": None}, opset=9)),
    ("mean_two_inputs", {"Mean"}, lambda: model(
        [node("Relu", ["x"], ["a"]), node("Mean", ["x", "a"], ["y"])], X4, {"y": None})),
    ("batchnorm_written_out_opset9", {"Unsqueeze", "Mul", "Add"}, lambda: model(  # Caffe2's export of BatchNorm
        [node("Unsqueeze", ["s"], ["s3"], axes=[1, 2]), node("Mul", ["x", "s3"], ["m"], name="scale"),
         node("Unsqueeze", ["b"], ["b3"], axes=[1, 2]), node("Add", ["m", "b3"], ["y"], name="shift")],
        X4, {"y": None}, [("s", weights(4)), ("b", weights(4))], opset=9)),
    ("softmax_opset9_flattened_unit_axes", {"GlobalAveragePool", "Softmax"}, lambda: model(  # SqueezeNet's head
        [node("GlobalAveragePool", ["x"], ["g"]), node("Softmax", ["g"], ["y"], axis=1)], X4, {"y": None}, opset=9)),
    ("exp", {"Exp"}, lambda: model([node("Exp", ["x"], ["y"])], X4, {"y": None})),
    ("elu", {"Elu"}, lambda: model([node("Elu", ["x"], ["y"], alpha=0.7)], X4, {"y": None})),
    ("elu_alpha_one", {"Elu"}, lambda: model([node("Elu", ["x"], ["y"])], X4, {"y": None})),
    ("pow_cube", {"Pow"}, lambda: model([node("Pow", ["x", "e"], ["y"])], X4, {"y": None}, [("e", np.float32(3.0))])),
    ("softplus", {"Softplus"}, lambda: model([node("Softplus", ["x"], ["y"])], X4, {"y": None})),
    ("sqrt_of_relu", {"Relu", "Sqrt"}, lambda: model(
        [node("Relu", ["x"], ["r"]), node("Sqrt", ["r"], ["y"])], X4, {"y": None})),
    ("pow_square", {"Pow"}, lambda: model([node("Pow", ["x", "e"], ["y"])], X4, {"y": None},
                                          [("e", np.float32(2.0))])),
    ("hard_sigmoid", {"HardSigmoid"}, lambda: model(
        [node("HardSigmoid", ["x"], ["y"], alpha=0.3, beta=0.4)], X4, {"y": None})),
    ("hard_swish", {"HardSwish"}, lambda: model([node("HardSwish", ["x"], ["y"])], X4, {"y": None}, opset=14)),
    ("slice_channels_and_width", {"Slice"}, lambda: model(
        [node("Slice", ["x", "starts", "ends", "axes"], ["y"])], X4, {"y": None},
        [("starts", np.array([1, -5], np.int64)), ("ends", np.array([3, 100], np.int64)),
         ("axes", np.array([1, 3], np.int64))])),
    ("slice_opset9_attributes", {"Slice"}, lambda: model(
        [node("Slice", ["x"], ["y"], starts=[2], ends=[7], axes=[2])], X4, {"y": None}, opset=9)),
    ("split_channels_three_ways", {"Split"}, lambda: model(
        [node("Split", ["x", "parts"], ["a", "b", "c"], axis=1)], [1, 6, 5, 4], {"a": None, "b": None, "c": None},
        [("parts", np.array([1, 2, 3], np.int64))])),
    ("reduce_sum_mean_over_channels", {"ReduceSum", "ReduceMean"}, lambda: model(
        [node("ReduceSum", ["x", "axes"], ["s"]), node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=0)],
        X4, {"s": None, "m": None}, [("axes", np.array([1], np.int64))])),
    ("reduce_sum_channels_2d", {"Flatten", "ReduceSum"}, lambda: model(
        [node("Flatten", ["x"], ["f"]), node("ReduceSum", ["f", "axes"], ["y"])],
        X4, {"y": None}, [("axes", np.array([1], np.int64))])),
    ("l2_normalize_embedding", {"Flatten", "LpNormalization"}, lambda: model(
        [node("Flatten", ["x"], ["f"]), node("LpNormalization", ["f"], ["y"], axis=1, p=2)], X4, {"y": None})),
    ("l2_normalize_channels", {"LpNormalization"}, lambda: model(
        [node("LpNormalization", ["x"], ["y"], axis=1, p=2)], X4, {"y": None})),
    ("upsample_opset9", {"Upsample"}, lambda: model(
        [node("Upsample", ["x", "scales"], ["y"], mode="nearest")], [1, 3, 5, 4], {"y": None},
        [("scales", np.array([1, 1, 2, 2], np.float32))], opset=9)),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_handler_matches_onnxruntime_in_opencv(case, tmp_path):
    name, _, factory = case
    proto = factory()
    inputs = random_inputs([d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim])
    parity, caffe = opencv_vs_onnxruntime(proto, tmp_path, inputs)
    assert parity.passed, parity.to_json()
    assert set(caffe.outputs) == {o.name for o in proto.graph.output}
    # Caffe readers take the tops no layer reads as the net's outputs: exactly the ONNX outputs
    read = {bottom for layer in caffe.net.layer for bottom in layer.bottom}
    assert {t for layer in caffe.net.layer for t in layer.top if t not in read} == set(caffe.outputs.values())


def test_constant_subgraphs_are_folded_and_mul_add_becomes_one_scale_with_bias(tmp_path):
    proto = dict((c[0], c[2]) for c in CASES)["batchnorm_written_out_opset9"]()
    parity, caffe = opencv_vs_onnxruntime(proto, tmp_path, random_inputs(X4))
    assert parity.passed, parity.to_json()
    assert caffe.layer_types == {"Input": 1, "Scale": 1}
    assert caffe.net.layer[1].scale_param.bias_term


@pytest.mark.parametrize("case, refused", [
    (lambda: model([node("LRN", ["x"], ["y"], size=4)], X4, {"y": None}), "LRN size 4"),
    (lambda: model([node("Softmax", ["x"], ["y"], axis=1)], X4, {"y": None}, opset=11),
     "Softmax over the flattened axes 1.. of [1, 4, 9, 8]"),
    (lambda: model([node("GlobalAveragePool", ["x"], ["g"]), node("Sum", ["x", "g"], ["y"])], X4, {"y": None}),
     "broadcast Sum"),
], ids=["lrn_even_size", "softmax_flattened_axes", "sum_broadcast"])
def test_inexpressible_configurations_are_refused_naming_the_op(case, refused):
    from edgepad.convert.caffe.onnx_to_caffe import onnx_to_caffe
    from edgepad.errors import UnsupportedOpError

    with pytest.raises(UnsupportedOpError, match=re.escape(refused)):
        onnx_to_caffe(case())


def test_layers_outside_bvlc_caffe_are_warned_about():
    from edgepad.convert.caffe.onnx_to_caffe import onnx_to_caffe

    cases = dict((c[0], c[2]) for c in CASES)
    (relu6,) = onnx_to_caffe(cases["clip_relu6"]()).warnings
    assert "ReLU6" in relu6 and "misreads it as a plain ReLU" in relu6 and "--to vim3" in relu6
    (normalize,) = onnx_to_caffe(cases["l2_normalize_channels"]()).warnings
    assert "Normalize" in normalize and "not a BVLC Caffe layer" in normalize
    (power,) = onnx_to_caffe(cases["sqrt_of_relu"]()).warnings
    assert "Power" in power and "misreads it" in power
    assert onnx_to_caffe(cases["lrn_alexnet"]()).warnings == []
    assert onnx_to_caffe(cases["elu"]()).warnings == []  # written as ELU(alpha 1), ReLU and Eltwise


def test_every_registered_handler_has_a_case():
    covered = set().union(*(ops for _, ops, _ in CASES))
    missing = sorted(set(HANDLERS) - covered)
    assert not missing, f"handlers without a test case in CASES: {missing}"


def test_cases_really_contain_the_ops_they_claim():
    for name, ops, factory in CASES:
        present = {n.op_type for n in factory().graph.node}
        assert ops <= present, f"{name} claims {sorted(ops - present)} but its model has {sorted(present)}"
