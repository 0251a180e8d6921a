"""The `tflite` target: calibrate with the card's preprocessing, quantize to integers, judge on held-out faces.

Writes OUT/model.tflite and the card's `targets.tflite`; its report section gives cosine (mean and worst input), max
abs and decision agreement against the Keras model on evaluation images it was not calibrated with, and which
operations Mesa's Teflon delegate would take to the NPU.
"""
from __future__ import annotations

import numpy as np

from edgepad.errors import ParityError

from ..heldout import decision_agreement, quantization_images
from ..parity import compare_outputs
from . import teflon
from .quantize import IO_DTYPE, quantize_to_tflite

MODEL_FILE = "model.tflite"
FLIPPED_NAMED = 5


def tflite_target(ctx) -> dict:
    from edgepad.runtime.backends.tflite_backend import TfliteModel

    options, card = ctx.options, ctx.card
    images = quantization_images(options.calibration, options.eval_images, card, options.calibration_count,
                                 required=True, target="tflite")
    evaluation, evaluation_sources = images.evaluation, images.evaluation_sources
    if not evaluation:  # a single calibration image: judge on the parity inputs rather than on nothing
        evaluation, evaluation_sources = list(ctx.parity_inputs), list(ctx.parity_sources)
    spec = card["input"]
    hwc = (spec["height"], spec["width"], spec["channels"])
    with ctx.steps.step(f"Quantizing to an integer TFLite model ({len(images.calibration)} calibration images)"):
        flatbuffer = quantize_to_tflite(ctx.keras_model, hwc, images.calibration)
        path = ctx.work_dir / MODEL_FILE
        path.write_bytes(flatbuffer)

    entry = {"file": MODEL_FILE, "layout": "nhwc", "io_dtype": IO_DTYPE, "kernels": "int8"}
    card["targets"]["tflite"] = entry
    with ctx.steps.step(f"Checking {MODEL_FILE} against Keras on {len(evaluation)} held-out images"):
        model = TfliteModel(str(ctx.work_dir), card, warn=lambda _message: None)
        scale, zero_point = model.input["quantization"]
        entry["input"] = {"dtype": np.dtype(model.input["dtype"]).name, "scale": float(scale),
                          "zero_point": int(zero_point), "shape": [int(d) for d in model.input["shape"]]}
        reference = ctx.run_keras(evaluation)
        candidate: dict[str, list[np.ndarray]] = {name: [] for name in reference}
        for x in evaluation:
            outputs = model.run(x[None])
            for name, value in zip(reference, outputs.values(), strict=True):
                candidate[name].append(value)
        parity = compare_outputs(reference, candidate, reference_name="keras (float)",
                                 candidate_name=f"{MODEL_FILE} (TFLite interpreter)", atol=None,
                                 min_cosine=options.min_cosine)
        first = next(iter(reference))
        agreement = decision_agreement(np.concatenate(reference[first]), np.concatenate(candidate[first]), card,
                                       evaluation_sources)
        operations = teflon.operation_table(_operations(flatbuffer))

    section = parity.to_json()
    section["cosine_min"] = min((o["cosine_min"] for o in section["outputs"]), default=1.0)
    section.update(agreement.to_json())
    section.update({"file": MODEL_FILE, "input": entry["input"], "min_agreement": options.min_agreement,
                    "calibration_sources": images.calibration_sources, "eval_sources": evaluation_sources,
                    "teflon": {**teflon.summary(operations), "table": operations}})
    failed = not parity.passed or (agreement.share is not None and agreement.share < options.min_agreement)
    section["passed"] = not failed
    if failed:
        raise ParityError(_failure(parity, agreement, options, len(evaluation)))
    return section


def _operations(flatbuffer: bytes) -> list[dict]:
    """The model's own operations, without the CPU delegate (XNNPACK) that would swallow them into one node."""
    from edgepad.runtime.backends.tflite_backend import interpreter_module

    module = interpreter_module()
    interpreter = module.Interpreter(model_content=flatbuffer, experimental_op_resolver_type=(
        module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    return interpreter._get_ops_details()  # LiteRT's only listing of a model's operations


def _failure(parity, agreement, options, inputs: int) -> str:
    message = (f"tflite: the integer model reaches mean cosine {parity.cosine:.4f} against Keras "
               f"(--min-cosine {options.min_cosine:g})")
    if agreement.share is not None:
        message += f" and keeps {agreement.share:.1%} of the decisions (--min-agreement {options.min_agreement:g})"
    message += f" on {inputs} held-out images"
    if agreement.flipped:
        shown = ", ".join(agreement.flipped[:FLIPPED_NAMED])
        more = f" and {len(agreement.flipped) - FLIPPED_NAMED} more" if len(agreement.flipped) > FLIPPED_NAMED else ""
        message += f"; decisions flipped on {shown}{more}"
    return message + "; try more or more varied --calibration images, or a model trained to the end"
