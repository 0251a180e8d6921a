"""The `onnx` target: the ONNX graph(s) the pipeline exported (model.onnx, and model.nchw.onnx for the NCHW
targets), each checked against Keras with onnxruntime, graph optimisations off."""
from __future__ import annotations

from ..report import TargetReport


def run(ctx) -> TargetReport:
    """Check every ONNX graph written against Keras."""
    from ..parity import compare_outputs
    from .onnx_runner import run_onnx

    report = TargetReport("onnx")
    for key, entry in (("onnx", ctx.card.targets.onnx), ("onnx_nchw", ctx.card.targets.onnx_nchw)):
        if entry is None:
            continue
        with ctx.steps.step(f"Checking {entry.file} against {ctx.reference_name} (onnxruntime, optimisations off)"):
            outputs = run_onnx(str(ctx.work_dir / entry.file), ctx.inputs_as(entry.layout))
            parity = compare_outputs(keras_outputs_as_onnx(ctx.keras_outputs, outputs), outputs,
                                     reference_name=ctx.reference_name, candidate_name=entry.file,
                                     atol=ctx.options.atol)
        parity.raise_if_failed(f"{ctx.options.model}", hint="see report.json for every output")
        report.files.append(entry.file)
        if key == "onnx":
            report.parity = parity.to_json()
            report.details.update({"file": entry.file, "simplified": entry.simplified,
                                   "input_sources": ctx.parity_sources})
            if ctx.card.source is not None and ctx.card.source.layout is not None:
                # an .onnx input: its layout, and whether the graph or --layout told it
                report.details["source_layout"] = ctx.card.source.layout
        else:
            report.details["nchw"] = parity.to_json()
    return report


def keras_outputs_as_onnx(keras_outputs: dict, onnx_outputs: dict) -> dict:
    """Keras outputs under the ONNX names (same order: export_onnx names them from the Keras outputs)."""
    return {name: values for name, values in zip(onnx_outputs, keras_outputs.values(), strict=True)}
