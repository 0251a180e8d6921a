"""Runs INSIDE the toolkit's virtual environment (acuitylite, TensorFlow 2.17, Python 3.8/3.10/3.12), never
in edgepad's.

    python toolkit_worker.py ACTION REQUEST.json RESULT.json

It imports nothing from edgepad: requests and results are JSON files, arrays travel as .npy/.npz files beside them.
Everything the toolkit prints goes to stdout/stderr, which edgepad sends to a log file; RESULT.json says
{"ok": true, ...} or {"ok": false, "error": {"stage", "message", ...}} in one line a user can act on.

Actions: doctor (versions), compile (ONNX -> quantize -> host simulation -> NBG + ovxlib case), caffe (import a
Caffe model with CaffeLoader and run it in float: an independent reader of edgepad's Caffe files).
"""
from __future__ import annotations

import json
import os
import re
import sys
import traceback

ACTIVATIONS_THAT_CLIP = {"relu", "relun", "relu_keras", "clipbyvalue"}


class StageError(Exception):
    """A failure with the stage it happened in and a message for the user."""

    def __init__(self, stage, message, **details):
        super().__init__(message)
        self.stage = stage
        self.details = details


def main(argv):
    action, request_path, result_path = argv[1], argv[2], argv[3]
    with open(request_path) as f:
        request = json.load(f)
    try:
        result = ACTIONS[action](request)
        result["ok"] = True
    except StageError as error:
        traceback.print_exc()
        result = {"ok": False, "error": dict(stage=error.stage, message=str(error), **error.details)}
    except Exception as error:  # the toolkit raises bare TypeErrors and its own AcuityError: report, don't crash
        traceback.print_exc()
        result = {"ok": False, "error": {"stage": "unknown", "message": "acuitylite failed: %s" % _one_line(error)}}
    with open(result_path, "w") as f:
        json.dump(result, f, indent=2)
    return 0 if result["ok"] else 1


def doctor(_request):
    versions = {}
    for module in ("acuitylib", "tensorflow", "numpy", "torch", "onnx"):
        try:
            imported = __import__(module)
            versions[module] = getattr(imported, "__version__", None)
        except Exception as error:  # noqa: BLE001 - a broken import is exactly what doctor reports
            versions[module] = "import failed: %s" % _one_line(error)
    versions["acuitylite"] = _acuitylite_version()
    versions.pop("acuitylib", None)
    versions["python"] = "%d.%d.%d" % sys.version_info[:3]
    return {"versions": versions}


def compile_model(request):
    import numpy as np

    stage = "importing the ONNX model"
    print("== edgepad: %s %s" % (stage, request["onnx"]), flush=True)
    model = _load_onnx(request)
    calibration = np.load(request["calibration"]) if request.get("calibration") else None
    evaluation = np.load(request["evaluation"])
    layer_inputs = evaluation[: int(request.get("layer_inputs", 4))]
    output_lids = list(model.get_output_names())

    print("== edgepad: float simulation", flush=True)
    float_outputs = _run_all(model, evaluation, output_lids)
    float_layers = [_run_layers(model, x) for x in layer_inputs]

    quantizer, qtype = request["quantizer"], request["qtype"]  # edgepad's table: convert/vim3/compilation.py
    print("== edgepad: quantizing with %s %s" % (quantizer, qtype), flush=True)
    _quantize(model, quantizer, qtype, calibration if calibration is not None else evaluation,
              request.get("quantize_options"))
    hybrid = _move_to_int16(model, request.get("int16_layers") or [], quantizer, qtype,
                            calibration if calibration is not None else evaluation, request["out_dir"])
    input_quantization = _hold_pixels(model, request["scheme"]) if request.get("pixel_input") else None
    # on by default for affine schemes; a request may turn it off (to measure what it changes)
    requantization = (_exact_requantization(model) if quantizer == "asymmetric_affine"
                      and request.get("exact_requantization", True) else None)

    print("== edgepad: quantized simulation", flush=True)
    quantized_outputs = _run_all(model, evaluation, output_lids)
    layers = _layer_table(model, float_layers, layer_inputs)
    # every layer's quantized output for the last evaluation inputs (those the host runs the library on): what
    # the library's per-node dumps are compared with when the two disagree
    layer_dump = _save_layer_dump(model, evaluation[-int(request.get("dump_inputs", 8)):], request["out_dir"])

    out_dir = request["out_dir"]
    np.savez(os.path.join(out_dir, "float_outputs.npz"), **{"%d" % i: v for i, v in enumerate(float_outputs)})
    np.savez(os.path.join(out_dir, "quantized_outputs.npz"), **{"%d" % i: v for i, v in enumerate(quantized_outputs)})
    with open(os.path.join(out_dir, "layers.json"), "w") as f:
        json.dump(layers, f, indent=1)

    # a quantization the host will refuse anyway is not worth the NBG compile (about 20 s)
    worst = min(float(np.mean([_cosine(f, q) for f, q in zip(fo, qo)]))
                for fo, qo in zip(float_outputs, quantized_outputs))
    exported = worst >= float(request.get("min_cosine") or 0.0)
    if exported:
        _export(model, request)
    else:
        print("== edgepad: mean cosine %.6f below --min-cosine: not exporting" % worst, flush=True)
    return {
        "exported": exported,
        "outputs": [{"lid": lid, "onnx_name": _onnx_output_name(lid)} for lid in output_lids],
        "float_outputs": os.path.join(out_dir, "float_outputs.npz"),
        "quantized_outputs": os.path.join(out_dir, "quantized_outputs.npz"),
        "layers": os.path.join(out_dir, "layers.json"),
        "nbg_dir": os.path.join(out_dir, "nbg"),
        "case_dir": os.path.join(out_dir, "case"),
        "quantizer": quantizer,
        "qtype": qtype,
        "acuitylite": _acuitylite_version(),
        "input_quantization": input_quantization,
        "layer_dump": layer_dump,
        "requantization": requantization,
        "hybrid": hybrid,
    }


def caffe(request):
    import numpy as np
    from acuitylib.interface.importer import CaffeLoader

    try:
        model = CaffeLoader(model=request["prototxt"], weights=request["caffemodel"]).load()
    except Exception as error:  # noqa: BLE001
        raise StageError("importing the Caffe model", "acuitylite's CaffeLoader could not read %s: %s"
                         % (request["prototxt"], _one_line(error))) from error
    output_lids = list(model.get_output_names())
    outputs = _run_all(model, np.load(request["inputs"]), output_lids)
    path = os.path.join(request["out_dir"], "caffe_outputs.npz")
    np.savez(path, **{"%d" % i: v for i, v in enumerate(outputs)})
    layers = [{"lid": layer.lid, "op": layer.op} for layer in model.execution_sequence()]
    return {"outputs": [{"lid": lid} for lid in output_lids], "arrays": path, "layers": layers}


def _load_onnx(request):
    from acuitylib.interface.importer import OnnxLoader

    try:
        return OnnxLoader(model=request["onnx"]).load(
            inputs=[request["input_name"]], input_size_list=[request["input_shape"]], outputs=request["outputs"])
    except Exception as error:  # noqa: BLE001 - acuitylite fails on unknown ops with a bare TypeError
        unsupported = _unsupported_nodes(request["onnx"])
        if unsupported:
            ops = sorted({op for op, _ in unsupported})
            nodes = ", ".join("'%s' (%s)" % (node, op) for op, node in unsupported[:6])
            raise StageError("importing the ONNX model",
                             "acuitylite %s has no conversion rule for ONNX op%s %s, used by node%s %s"
                             % (_acuitylite_version(), "s" if len(ops) > 1 else "", ", ".join(ops),
                                "s" if len(unsupported) > 1 else "", nodes),
                             ops=ops, nodes=[n for _, n in unsupported]) from error
        raise StageError("importing the ONNX model", "acuitylite could not import %s: %s"
                         % (os.path.basename(request["onnx"]), _one_line(error))) from error


def _unsupported_nodes(onnx_path):
    """(op, node name) of every node whose op type appears in none of the toolkit's ONNX conversion rules."""
    import onnx
    from acuitylib.converter.onnx.onnxruler import onnx_ruler_generate

    known = set()
    for rule in onnx_ruler_generate.gen_onnx_ruler():
        for alias in rule["src_ops_alias"]:
            known.add(re.sub(r"_\d+$", "", alias))
    graph = onnx.load(onnx_path).graph
    return [(node.op_type, node.name or node.output[0]) for node in graph.node if node.op_type not in known]


def _quantize(model, quantizer, qtype, samples, options=None):
    from acuitylib.interface.quantization import Quantization

    def batches():
        for x in samples:
            yield [x]

    try:
        Quantization(model).quantize(input_generator_func=batches, quantizer=quantizer, qtype=qtype,
                                     iterations=len(samples), **(options or {}))
    except Exception as error:  # noqa: BLE001
        raise StageError("quantizing", "acuitylite could not quantize with %s %s: %s"
                         % (quantizer, qtype, _one_line(error))) from error


def _move_to_int16(model, lids, quantizer, qtype, samples, out_dir):
    """Mixed precision: the named layers in int16 (dynamic fixed point), the rest as quantized. The way that
    compiles: the quantize table's customized_quantize_layers, then quantize(hybrid=True, rebuild=False), which
    inserts dtype_converter layers at each boundary. (Setting the layers' output tensors to int16 alone leaves
    uint8 weights on an int16 output: the NBG compile then fails, vnn_VerifyGraph status -3.)"""
    if not lids:
        return None
    from acuitylib.interface.quantization import Quantization

    known = {layer.lid for layer in model.execution_sequence()}
    unknown = [lid for lid in lids if lid not in known]
    if unknown:
        raise StageError("quantizing", "no layer named %s in the toolkit's graph" % ", ".join(unknown))
    table = os.path.join(out_dir, "hybrid.quantize")
    model.dump_quantize(table)
    with open(table) as f:
        text = f.read()
    if "customized_quantize_layers: {}" not in text:
        raise StageError("quantizing", "acuitylite %s wrote a quantize table without an empty "
                         "customized_quantize_layers entry (%s)" % (_acuitylite_version(), table))
    entries = "".join("\n  '%s': dynamic_fixed_point-i16" % lid for lid in lids)
    with open(table, "w") as f:
        f.write(text.replace("customized_quantize_layers: {}", "customized_quantize_layers:" + entries))
    model.load_quantize(table)

    def batches():
        for x in samples:
            yield [x]

    try:
        Quantization(model).quantize(input_generator_func=batches, quantizer=quantizer, qtype=qtype, hybrid=True,
                                     rebuild=False, iterations=len(samples))
    except Exception as error:  # noqa: BLE001
        raise StageError("quantizing", "acuitylite could not move %d layer(s) to int16: %s"
                         % (len(lids), _one_line(error))) from error
    converters = [layer.lid for layer in model.execution_sequence() if layer.op == "dtype_converter"]
    still = [lid for lid in lids if (_quant_params(model, lid) or {}).get("qtype") not in ("i16", "int16")]
    if still or not converters:
        raise StageError("quantizing", "acuitylite %s did not move %s to int16 (%d converters inserted)"
                         % (_acuitylite_version(), ", ".join(still) or "the layers", len(converters)))
    print("== edgepad: %d layer(s) in int16, %d dtype converters" % (len(lids), len(converters)), flush=True)
    return {"int16_layers": list(lids), "converters": converters, "table": table}


# The graph takes pixel values 0..255: its input tensor must hold each of them exactly. Face crops span 0..255,
# so calibration usually gives exactly these; otherwise the affine ones are set (the toolkit then quantizes the
# first layer's bias for them at export). Fixed point keeps the calibrated fraction length when it holds 0..255
# (0 <= fl <= 7 in int16): forcing it would leave the bias's fraction length (input + weight) inconsistent.
PIXEL_INPUT_QUANTIZATION = {
    "uint8": {"quantizer": "asymmetric_affine", "qtype": "uint8", "scale": 1.0, "zero_point": 0},
    "int8": {"quantizer": "asymmetric_affine", "qtype": "int8", "scale": 1.0, "zero_point": -128},
}
PIXEL_MAX_FL = {"int16": 7}  # 255 * 2**7 = 32640 fits int16


def _hold_pixels(model, scheme):
    """Make the input tensors hold 0..255 exactly; returns what each input tensor has after."""
    wanted = PIXEL_INPUT_QUANTIZATION.get(scheme)
    from acuitylib.interface.quantization import Quantization

    result = {}
    for layer in model.execution_sequence():
        if layer.op != "input":
            continue
        port = "%s:out0" % layer.lid
        before = _quant_params(model, layer.lid) or {}
        if scheme == "int16":
            fl = before.get("fl")
            if fl is None or not 0 <= int(fl) <= PIXEL_MAX_FL[scheme]:
                raise StageError("quantizing", "input %s: int16 fixed point with fraction length %s cannot hold pixel "
                                 "values 0..255 exactly; calibrate with images spanning more of 0..255"
                                 % (layer.lid, fl))
        elif wanted is not None and not (before.get("scale") == wanted["scale"]
                                         and before.get("zero_point") == wanted["zero_point"]):
            params = {k: v for k, v in wanted.items() if k != "zero_point"}
            params["zp"] = wanted["zero_point"]
            try:
                Quantization(model).set_quant_params(port, params)
            except Exception as error:  # noqa: BLE001
                raise StageError("quantizing", "acuitylite could not set input %s to hold pixel values 0..255 (%s): "
                                 "%s" % (layer.lid, wanted, _one_line(error))) from error
            print("== edgepad: input %s quantization %s -> %s" % (layer.lid, before, wanted), flush=True)
        result[layer.lid] = dict(_quant_params(model, layer.lid) or {}, calibrated=before)
    return result


MULTIPLIER_BITS = 12  # well inside the NPU's multiplier; the scales move by at most 2^-12 relative
PASS_THROUGH = {"relun", "relu", "relu_keras", "permute", "squeeze", "reshape", "flatten"}


def _short(value, bits=MULTIPLIER_BITS):
    """value rounded to `bits` significant bits."""
    import math

    mantissa, exponent = math.frexp(value)
    return math.ldexp(round(mantissa * 2 ** bits), exponent - bits)


def _scale_for(numerator, multiplier):
    """The float32 scale s closest to numerator / multiplier with numerator / s >= multiplier (computed from the
    float32 values, as the compiler does): a multiplier truncated to its short mantissa stays exact."""
    import numpy as np

    scale = np.float32(numerator / multiplier)
    numerator32 = np.float64(np.float32(numerator))
    while numerator32 / np.float64(scale) < multiplier:
        scale = np.nextafter(scale, np.float32(0))
    return float(scale)


def _exact_requantization(model):
    """Make the NPU's requantization exact, as the simulation's is.

    A layer's output is acc * in_scale * weight_scale / out_scale (+ zero point), rounded. The simulation computes
    that multiplier in floating point; the NPU holds it in a fixed-point multiplier of about 15 significant bits
    (measured in the emulator: its results sit a few 1e-5 below the exact ones, so values within ~0.002 of a .5
    tie round the other way: 0.07% of a first convolution's values, and a deep network amplifies those 1-step
    differences to many steps). So each weighted layer's output scale is nudged (by at most 2^-12 relative) until
    the multiplier has a MULTIPLIER_BITS-bit mantissa, which the NPU holds exactly; pass-through layers (fused
    activations, permutes, squeezes) follow their input's new scale and biases keep scale in * weight."""
    from acuitylib.interface.quantization import Quantization

    quantization = Quantization(model)
    current = {}  # tensor url -> (params before, params now)
    changed = []

    def params_of(lid, port="out0"):
        try:
            return dict(quantization.get_quant_params("%s:%s" % (lid, port)))
        except Exception:  # noqa: BLE001
            return None

    def set_scale(lid, port, params, scale):
        new = {"quantizer": params["quantizer"], "qtype": params["qtype"], "scale": float(scale),
               "zp": int(params.get("zero_point", 0))}
        quantization.set_quant_params("%s:%s" % (lid, port), new)

    for layer in model.execution_sequence():
        out = params_of(layer.lid)
        url = "@%s:out0" % layer.lid
        if out is None or out.get("quantizer") != "asymmetric_affine" or out.get("scale") is None:
            continue
        sources = [current.get(t.url) for t in layer.inputs]
        if layer.op in PASS_THROUGH and sources and sources[0] is not None:
            before, now = sources[0]
            if abs(float(out["scale"]) - float(before["scale"])) <= 1e-12 * float(before["scale"]) and \
                    int(out.get("zero_point", 0)) == int(before.get("zero_point", 0)):
                set_scale(layer.lid, "out0", out, now["scale"])
            current[url] = (out, params_of(layer.lid))
            continue
        weight = params_of(layer.lid, "weight") if layer.op in ("convolution", "fullconnect") else None
        if weight is not None and sources and sources[0] is not None and _size(weight.get("scale")) == 1:
            in_scale = float(sources[0][1]["scale"])
            w_scale = float(_first(weight["scale"]))
            multiplier = in_scale * w_scale / float(out["scale"])
            target = _short(multiplier)
            new_scale = _scale_for(in_scale * w_scale, target)
            set_scale(layer.lid, "out0", out, new_scale)
            bias = params_of(layer.lid, "bias")
            if bias is not None and bias.get("scale") is not None:
                set_scale(layer.lid, "bias", bias, in_scale * w_scale)
            changed.append({"layer": layer.lid, "multiplier": multiplier, "now": target,
                            "out_scale_change": new_scale / float(out["scale"]) - 1.0})
        current[url] = (out, params_of(layer.lid))
    return {"bits": MULTIPLIER_BITS, "layers": changed}


def _size(value):
    import numpy as np

    return int(np.size(value)) if value is not None else 0


def _first(value):
    import numpy as np

    return float(np.ravel(value)[0])


def _run_all(model, inputs, output_lids):
    """Per output, the stacked outputs for each input (the toolkit's fake-quantized simulation once quantized)."""
    import numpy as np
    from acuitylib.interface.inference import Inference

    inference = Inference(model)
    inference.build_session()
    per_output = [[] for _ in output_lids]
    for x in inputs:
        outputs = inference.run_session([x])[1]
        for i, value in enumerate(outputs):
            per_output[i].append(np.asarray(value, dtype=np.float32))
    return [np.stack(values) for values in per_output]


def _run_layers(model, x, layer_func=None):
    """{tensor url: output} of every layer for one input, through the toolkit's dynamic (eager) execution."""
    import numpy as np
    from acuitylib.inference_session import InferenceSession

    lids = [layer.lid for layer in model.execution_sequence()]
    session = InferenceSession(model)
    session.build(execution_mode="dynamic")
    names, tensors = session.run_step([x], output_layers=lids, layer_func=layer_func)
    return {name: np.asarray(tensor, dtype=np.float32) for name, tensor in zip(names, tensors)}


def _layer_table(model, float_layers, layer_inputs):
    """Cosine of each layer's quantized output tensor against float, averaged over the inputs:
    accumulated: the whole network quantized, errors carried from layer to layer;
    single: this layer alone quantized: its inputs are the float run's, quantized with their own parameters, so
    the number shows what this layer's quantization costs (RKNN-Toolkit2's accuracy analysis does the same)."""
    import numpy as np
    import tensorflow as tf

    model.set_all_tensors_to_fake_quantize()
    params = {"@%s:out0" % layer.lid: _quant_params(model, layer.lid) for layer in model.execution_sequence()}
    accumulated, single = [], []
    for x, reference in zip(layer_inputs, float_layers):
        accumulated.append(_run_layers(model, x))

        def float_inputs(layer, constants, inputs, reference=reference):
            replaced = []
            for tensor, value in zip(layer.inputs, inputs):
                float_value = reference.get(tensor.url)
                if value is not None and float_value is not None and tuple(float_value.shape) == tuple(value.shape):
                    value = tf.constant(_fake_quantize(float_value, params.get(tensor.url)))
                replaced.append(value)
            return layer.compute_out_tensor(constants, replaced + list(inputs[len(replaced):]))

        single.append(_run_layers(model, x, float_inputs))

    table = []
    for layer in model.execution_sequence():
        url = "@%s:out0" % layer.lid
        if url not in float_layers[0]:
            continue
        stored = lambda run, url=url: _fake_quantize(run[url], params.get(url))  # noqa: E731 - as the NPU keeps it
        consumers = [getattr(c, "op", "") for c in (layer.output_layers or [])]
        row = {
            "layer": layer.lid,
            "op": layer.op,
            "shape": list(float_layers[0][url].shape),
            "cosine_accumulated": float(np.mean([_cosine(f[url], stored(q))
                                                 for f, q in zip(float_layers, accumulated)])),
            "cosine_single": float(np.mean([_cosine(f[url], stored(q)) for f, q in zip(float_layers, single)])),
            "quantization": params.get(url),
        }
        if len(consumers) == 1 and consumers[0] in ACTIVATIONS_THAT_CLIP:
            # the NPU fuses the activation: this tensor is quantized on the activation's range, so its own
            # negative part is clipped by design; the activation's row is the one that counts
            row["fused_into"] = layer.output_layers[0].lid
        table.append(row)
    return table


def _save_layer_dump(model, inputs, out_dir):
    """Every layer's fake-quantized output for each input, stored as its integers (or float16), in out_dir."""
    import numpy as np

    arrays, layers = {}, []
    for n, x in enumerate(inputs):
        outputs = _run_layers(model, x)  # the model is set to fake-quantize all tensors by _layer_table
        for i, layer in enumerate(model.execution_sequence()):
            url = "@%s:out0" % layer.lid
            if url not in outputs:
                continue
            params = _quant_params(model, layer.lid)
            arrays["%d_%d" % (n, i)] = _stored(_fake_quantize(outputs[url], params), params)
            if n == 0:
                layers.append({"key": "%d" % i, "lid": layer.lid, "op": layer.op, "quantization": params})
    path = os.path.join(out_dir, "layer_dump.npz")
    np.savez(path, **arrays)
    with open(os.path.join(out_dir, "layer_dump.json"), "w") as f:
        json.dump({"inputs": len(inputs), "layers": layers}, f, indent=1)
    return {"arrays": path, "layers": os.path.join(out_dir, "layer_dump.json"), "inputs": len(inputs)}


def _stored(value, params):
    """A fake-quantized tensor as the integers it holds (exact and small), float16 or float32 otherwise."""
    import numpy as np

    params = params or {}
    if params.get("scale") and params.get("qtype") in ("u8", "uint8", "i8", "int8", "i16", "int16"):
        scale = np.asarray(params["scale"], np.float64)
        if scale.size == 1:
            return (np.rint(value / float(scale)) + float(params.get("zero_point", 0))).astype(np.int32)
    if params.get("fl") is not None and params.get("qtype") in ("i8", "int8", "i16", "int16"):
        return np.rint(value * 2.0 ** float(params["fl"])).astype(np.int32)
    return np.asarray(value, np.float32)


QTYPE_RANGES = {"u8": (0, 255), "uint8": (0, 255), "i8": (-128, 127), "int8": (-128, 127),
                "i16": (-32768, 32767), "int16": (-32768, 32767), "u16": (0, 65535), "uint16": (0, 65535)}


def _fake_quantize(value, params):
    """value rounded onto the tensor's quantization grid (what the integer NPU can represent), back in float."""
    import numpy as np

    value = np.asarray(value, dtype=np.float32)
    if not params:
        return value
    quantizer, qtype = params.get("quantizer"), params.get("qtype")
    if quantizer in ("float16", "bfloat16") or qtype in ("float16", "f16"):
        return value.astype(np.float16).astype(np.float32)
    low, high = QTYPE_RANGES.get(qtype, (None, None))
    if low is None:
        return value
    if quantizer == "dynamic_fixed_point" and params.get("fl") is not None:
        step = 2.0 ** -float(params["fl"])
        return (np.clip(np.round(value / step), low, high) * step).astype(np.float32)
    scale, zero_point = params.get("scale"), params.get("zero_point", 0)
    if scale is None:
        return value
    scale, zero_point = np.asarray(scale, np.float32), np.asarray(zero_point, np.float32)
    if scale.size > 1:  # per channel, along channel_dim
        shape = [1] * value.ndim
        shape[int(params.get("channel_dim", -1))] = scale.size
        scale, zero_point = scale.reshape(shape), np.broadcast_to(zero_point, scale.shape).reshape(shape)
    if np.any(scale == 0):
        return value
    return ((np.clip(np.round(value / scale) + zero_point, low, high) - zero_point) * scale).astype(np.float32)


def _quant_params(model, lid):
    from acuitylib.interface.quantization import Quantization

    try:
        params = Quantization(model).get_quant_params("%s:out0" % lid)
    except Exception:  # noqa: BLE001 - not every tensor carries parameters (e.g. float16)
        return None
    return {k: (v.item() if hasattr(v, "item") and getattr(v, "size", 1) == 1 else
                (v.tolist() if hasattr(v, "tolist") else v)) for k, v in params.items()}


def _export(model, request):
    from acuitylib.interface.exporter import OvxlibExporter

    out_dir = request["out_dir"]
    licence = os.path.join(out_dir, "licence.txt")
    with open(licence, "w") as f:
        f.write(request["target"])  # the exporter compiles for the target id written in this file
    name = request["case_name"]
    print("== edgepad: exporting the NBG for %s" % request["target"], flush=True)
    try:
        # the SDK decides the NBG format: an older release's vsi_sdk writes the older format (see toolkit_env)
        OvxlibExporter(model).export(os.path.join(out_dir, "nbg", name), pack_nbg_only=True,
                                     viv_sdk=request.get("nbg_sdk") or request["sdk"], licence=licence)
    except Exception as error:  # noqa: BLE001
        raise StageError("exporting the NBG", "acuitylite could not compile the NBG for %s: %s"
                         % (request["target"], _one_line(error))) from error
    print("== edgepad: exporting the ovxlib case", flush=True)
    try:
        OvxlibExporter(model).export(os.path.join(out_dir, "case", name), viv_sdk=request["sdk"], licence=licence)
    except Exception as error:  # noqa: BLE001
        raise StageError("exporting the ovxlib case", "acuitylite could not write the ovxlib case: %s"
                         % _one_line(error)) from error


def _onnx_output_name(lid):
    """The toolkit names the layer it attaches to ONNX output X 'attach_X/out0_N'."""
    match = re.match(r"^attach_(.*)/out\d+(_\d+)?$", lid)
    return match.group(1) if match else lid


def _cosine(a, b):
    """edgepad.convert.parity.cosine_similarity, repeated: this script runs where edgepad cannot be imported."""
    import numpy as np

    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def _acuitylite_version():
    try:
        from importlib.metadata import version

        return version("acuitylite")
    except Exception:  # noqa: BLE001
        return None


def _one_line(error):
    text = " ".join(str(error).split()) or type(error).__name__
    return "%s: %s" % (type(error).__name__, text[:300]) if not isinstance(error, StageError) else text


ACTIONS = {"doctor": doctor, "compile": compile_model, "caffe": caffe}

if __name__ == "__main__":
    sys.exit(main(sys.argv))
