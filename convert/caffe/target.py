"""The `caffe` target: model.prototxt/model.caffemodel from the NCHW ONNX graph, checked with OpenCV's Caffe importer
against onnxruntime (and, for the report, against Keras)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepad.runtime.card import CaffeEntry

from ..parity import compare_outputs
from ..report import TargetReport
from .onnx_to_caffe import CAFFEMODEL, PROTOTXT, onnx_to_caffe, write_caffe_files


def run(ctx) -> TargetReport:
    """Write model.prototxt/.caffemodel, check them with OpenCV; adds targets.caffe to the card."""
    from .opencv_runner import run_caffe

    with ctx.steps.step("Converting ONNX (NCHW) to Caffe"):
        caffe = onnx_to_caffe(ctx.onnx_nchw_path, name=ctx.card.name or "edgepad")
        prototxt, caffemodel = write_caffe_files(caffe, ctx.work_dir)
        warnings = list(caffe.warnings)
    with ctx.steps.step("Checking the Caffe model with OpenCV's Caffe importer against onnxruntime"):
        inputs = ctx.inputs_as("nchw")
        reference = ctx.onnx_nchw_outputs(inputs)
        candidate = run_caffe(prototxt, caffemodel, inputs, caffe.input_blob, caffe.outputs)
        candidate = {name: candidate[name] for name in reference}
        parity = compare_outputs(reference, candidate, reference_name=f"onnxruntime:{Path(ctx.onnx_nchw_path).name}",
                                 candidate_name=f"opencv:{PROTOTXT}", atol=ctx.options.atol)
        # Against Keras too, for the report: each step was checked against the one before it, so this can exceed
        # the tolerance only by the sum of two in-tolerance differences; that is a warning, not a failure.
        keras = {onnx_name: values for onnx_name, values in zip(reference, ctx.keras_outputs.values(), strict=True)}
        vs_keras = compare_outputs(keras, _shaped_like(candidate, keras), reference_name=ctx.reference_name,
                                   candidate_name=f"opencv:{PROTOTXT}", atol=ctx.options.atol)
    parity.raise_if_failed(str(ctx.options.model), hint="a Caffe layer computes something else than its ONNX op: "
                           "convert with --to onnx meanwhile, or allow more with --atol")
    if not vs_keras.passed:
        warnings.append(f"Caffe vs Keras: max abs {vs_keras.max_abs:.3g} exceeds --atol {ctx.options.atol:g} "
                        "(each step is within it)")
    ctx.card.targets.caffe = CaffeEntry(prototxt=PROTOTXT, caffemodel=CAFFEMODEL, input=caffe.input_blob,
                                        input_shape=list(caffe.input_shape), outputs=list(caffe.outputs.values()),
                                        output_names=list(caffe.outputs), layout="nchw")
    return TargetReport.from_parity("caffe", parity, files=[PROTOTXT, CAFFEMODEL], warnings=warnings,
                                    details={"layers": caffe.layer_types, "vs_keras": vs_keras.to_json()})


def _shaped_like(candidate: dict, reference: dict) -> dict:
    """Keras outputs keep Keras' own shapes; OpenCV's have the ONNX graph's, equal in every element."""
    return {name: [np.reshape(c, np.shape(r)) for c, r in zip(candidate[name], reference[name], strict=True)]
            for name in reference}
