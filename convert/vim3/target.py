"""The `vim3` target: quantize the NCHW ONNX graph and compile it to a VIM3 NPU binary (NBG), checked on the host.

The compile itself runs in the toolkit's environment (acuitylite, or Khadas' SDK in a container); this module
prepares the calibration and evaluation inputs exactly as the model card says, compares the toolkit's float and
quantized simulations, checks the NBG header, and writes OUT/vim3/ plus the card's `targets.vim3`.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

from edgepad.errors import ExportError, InputFileError, ParityError, UsageError
from edgepad.hashing import sha256_file
from edgepad.runtime.card import ModelCard, NpuCase, NpuTensor, OnnxEntry, Vim3Entry

from ..parity import FLOAT32_ATOL, compare_outputs
from ..report import TargetReport
from .compilation import QUANTIZERS, NpuCompilation
from .compilers import compiler

QUANTIZE_SCHEMES = tuple(QUANTIZERS)
NEEDS_CALIBRATION = {"uint8", "int8", "int16"}
LAYER_TABLE_INPUTS = 4  # per-layer outputs are kept in memory: a few inputs are enough to rank the layers
WORST_LAYERS_NAMED = 3
# the ovxlib case files the board library is built from; IDE project files stay out of OUT
CASE_SKIPPED = re.compile(r"(^\.c?project$|\.vcxproj$)")


def run(ctx) -> TargetReport:
    from edgepad.runtime.nbg_header import target_pid

    from .nbg_header import check_nbg_header
    from .toolkit_env import BOARD_TARGETS

    options = ctx.options
    if options.quantize not in QUANTIZE_SCHEMES:
        raise UsageError(f"--quantize {options.quantize}: choose one of {', '.join(QUANTIZE_SCHEMES)}")
    target = BOARD_TARGETS[options.board]
    onnx_entry = _nchw_entry(ctx)
    backend = compiler(options.npu_toolkit)
    backend.check_target(target, options)  # fail before any work if the backend cannot compile for the board

    calibration, calibration_sources = load_calibration(options.calibration, ctx.card, options.calibration_count,
                                                        required=options.quantize in NEEDS_CALIBRATION)
    samples = [x for x, source in zip(ctx.parity_inputs, ctx.parity_sources, strict=True)
               if not source.startswith("synthetic:")]
    sample_sources = [s for s in ctx.parity_sources if not s.startswith("synthetic:")]
    evaluation = calibration + samples
    evaluation_sources = calibration_sources + sample_sources
    if not evaluation:  # float16 without calibration images: the structured synthetic inputs are all we have
        evaluation, evaluation_sources = list(ctx.parity_inputs), list(ctx.parity_sources)

    from edgepad.runtime.preprocess import batches

    name = case_name(ctx.card.name or "model")
    with ctx.steps.step(f"Compiling for {options.board} ({target}, {options.quantize}) with {backend.DISPLAY_NAME}"):
        compilation = backend.compile(
            onnx_path=ctx.onnx_nchw_path, input_name=onnx_entry.input, input_shape=onnx_entry.input_shape,
            outputs=onnx_entry.outputs, scheme=options.quantize,
            calibration=batches(calibration, "nchw"), evaluation=batches(evaluation, "nchw"),
            target=target, name=name, options=options)
    parity = _parity_section(ctx, compilation, evaluation, onnx_entry, options)  # raises before any file is kept
    nbg = compilation.nbg_dir / "network_binary.nb"
    if not nbg.is_file():
        raise ExportError(f"{backend.DISPLAY_NAME} wrote no network_binary.nb for {target} (log: {compilation.log})")
    expected_major = options.nbg_format if options.npu_toolkit == "acuitylite" else None
    header = check_nbg_header(nbg, target_pid(target), target, expected_major)

    details = {"target": target, "board": options.board, "backend": options.npu_toolkit,
               "toolkit": compilation.toolkit, "toolkit_version": compilation.toolkit_version,
               "quantize": options.quantize, "quantizer": compilation.quantizer, "nbg": header.to_json(),
               "input_sources": evaluation_sources, "calibration_images": len(calibration),
               "toolkit_log": compilation.log}
    measured, extra = parity
    details.update(extra)
    out_dir = ctx.work_dir / "vim3"
    files = _copy_outputs(compilation, out_dir)
    ctx.card.targets.vim3 = _card_entry(ctx, compilation, out_dir, files, onnx_entry, target, header)
    report = TargetReport("vim3", measured, files=[f"vim3/{f}" for f in files], details=details)
    # edgepad's NPU library (libnn_<case>.so) from the case, and its run in the emulator (convert/npu_lib/);
    # the emulator comes with acuitylite, so the Khadas SDK backend leaves the library to the board build
    if options.npu_toolkit == "acuitylite":
        from .npu_lib import build_npu_library

        report.checks.append(build_npu_library(ctx, compilation, evaluation, evaluation_sources,
                                               out_dir, target, target_pid(target)))
    return report


def load_calibration(folder, card: ModelCard, count: int, required: bool) -> tuple[list[np.ndarray], list[str]]:
    """Normalised (H, W, C) inputs from --calibration DIR, preprocessed exactly as the model card says."""
    from ..heldout import spread_over_folders
    from ..parity_inputs import image_files, normalize_for_card, read_image

    if folder is None:
        if required:
            raise InputFileError("--calibration: the vim3 target quantizes with real images and none were given; pass "
                                 "--calibration DIR (jpg/png like the model's inputs), or --quantize float16")
        return [], []
    if count < 1:
        raise UsageError(f"--calibration-count {count}: must be at least 1")
    files = spread_over_folders(image_files(folder, "--calibration"), count)
    return [normalize_for_card(read_image(path, "--calibration"), card) for path in files], [str(p) for p in files]


def case_name(model_name: str) -> str:
    """A C identifier for the generated case (vnn_<name>.c) and the board library (libnn_<name>.so).
    Letters and digits only: the toolkit drops underscores from the vnn_ file names but not from <name>.export.data."""
    name = re.sub(r"[^0-9a-zA-Z]", "", model_name).lower() or "model"
    return name if not name[0].isdigit() else f"m_{name}"


def _nchw_entry(ctx) -> OnnxEntry:
    for entry in (ctx.card.targets.onnx_nchw, ctx.card.targets.onnx):
        if entry is not None and ctx.onnx_nchw_path is not None and entry.file == ctx.onnx_nchw_path.name:
            return entry
    raise ExportError("the vim3 target needs the NCHW ONNX graph, which the onnx step did not write")


def _parity_section(ctx, compilation: NpuCompilation, evaluation, onnx_entry, options) -> tuple[dict, dict]:
    """(parity figures of the quantized model against float, the import check and per-layer table)."""
    if compilation.float_outputs is None or compilation.quantized_outputs is None:
        return {}, {"parity": f"not measured: {compilation.toolkit} gave no simulation outputs"}
    from edgepad.runtime.preprocess import batches

    # The toolkit's float import against onnxruntime: proves the import before judging the quantization.
    reference = ctx.onnx_nchw_outputs(batches(evaluation, "nchw"))
    imported = compare_outputs(reference, _like(reference, compilation.float_outputs),
                               reference_name="onnxruntime (model.nchw.onnx)",
                               candidate_name=f"{compilation.toolkit} float import", atol=FLOAT32_ATOL)
    imported.raise_if_failed(f"{options.model}", hint=f"the toolkit imported the graph wrongly; log: {compilation.log}")
    quantized = compare_outputs(compilation.float_outputs,
                                _like(compilation.float_outputs, compilation.quantized_outputs),
                                reference_name=f"{compilation.toolkit} float simulation",
                                candidate_name=f"{compilation.toolkit} {options.quantize} simulation",
                                atol=None, min_cosine=options.min_cosine)
    parity = quantized.to_json()
    parity["cosine_min"] = min((o["cosine_min"] for o in parity["outputs"]), default=1.0)
    if not quantized.passed:
        raise ParityError(_quantization_failure(quantized, compilation, options, len(evaluation)))
    return parity, {"import": imported.to_json(), "layers": compilation.layers,
                    "layer_inputs": min(LAYER_TABLE_INPUTS, len(evaluation))}


def worst_layers(layers: list[dict], count: int = WORST_LAYERS_NAMED) -> list[dict]:
    """Where quantization hurts most on its own (single-layer cosine), leaving out tensors the NPU fuses away."""
    candidates = [row for row in layers if "fused_into" not in row and row.get("cosine_single") is not None]
    return sorted(candidates, key=lambda row: row["cosine_single"])[:count]


def _quantization_failure(quantized, compilation: NpuCompilation, options, inputs: int) -> str:
    top1 = [o.top1_agreement for o in quantized.outputs if o.top1_agreement is not None]
    message = (f"vim3 {options.quantize}: the quantized model reaches mean cosine {quantized.cosine:.4f} against float "
               f"(--min-cosine {options.min_cosine:g}" + (f", top-1 agreement {min(top1):.0%}" if top1 else "")
               + f", {inputs} inputs)")
    worst = worst_layers(compilation.layers)
    if worst:
        message += "; worst layers (single-layer / accumulated cosine): " + ", ".join(
            f"'{row['layer']}' ({row['op']}) {row['cosine_single']:.4f}/{row['cosine_accumulated']:.4f}"
            for row in worst)
    if compilation.layers_file:
        message += f" (full table: {compilation.layers_file})"
    # Keeping those layers in int16 would be the next remedy, but acuitylite 6.57.1 fails to compile any
    # mixed-precision NBG (vsi_nn_SetupGraph -1), so it is not offered.
    message += ("; try --quantize int16 (whole model), more or more varied --calibration images "
                "(--calibration-count), or a model trained to the end (an untrained net amplifies rounding)")
    return message


def _like(reference: dict, candidate: dict) -> dict:
    """Candidate outputs in the reference's order and shapes (the toolkit may hand back NHWC for NCHW outputs)."""
    result = {}
    for name, ref_values in reference.items():
        if name not in candidate:
            raise ExportError(f"the toolkit's outputs {list(candidate)} do not include ONNX output '{name}'")
        values = []
        for ref, cand in zip(ref_values, candidate[name], strict=True):
            cand = np.asarray(cand, np.float32)
            if cand.shape != np.shape(ref) and cand.ndim == 4 and cand.transpose(0, 3, 1, 2).shape == np.shape(ref):
                cand = cand.transpose(0, 3, 1, 2)
            elif cand.shape != np.shape(ref) and cand.size == np.size(ref):
                cand = cand.reshape(np.shape(ref))
            values.append(cand)
        result[name] = values
    return result


def _copy_outputs(compilation: NpuCompilation, out_dir: Path) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source in (compilation.nbg_dir / "network_binary.nb", compilation.nbg_dir / "nbg_meta.json"):
        if source.is_file():
            shutil.copy2(source, out_dir / source.name)
            written.append(source.name)
    for source in sorted(compilation.case_dir.iterdir()) if compilation.case_dir.is_dir() else []:
        if source.is_file() and not CASE_SKIPPED.search(source.name) and source.name not in written:
            shutil.copy2(source, out_dir / source.name)
            written.append(source.name)
    return written


def _card_entry(ctx, compilation: NpuCompilation, out_dir: Path, files: list[str], onnx_entry: OnnxEntry,
                target: str, header) -> Vim3Entry:
    from edgepad.runtime.backends.ksnn_backend import ksnn_call

    meta = json.loads((out_dir / "nbg_meta.json").read_text()) if (out_dir / "nbg_meta.json").is_file() else {}
    meta_inputs = list(meta.get("Inputs", {}).values())
    meta_outputs = list(meta.get("Outputs", {}).values())
    outputs = []
    for i, name in enumerate(onnx_entry.outputs):
        spec = _tensor_spec(meta_outputs[i]) if i < len(meta_outputs) else {}
        outputs.append(NpuTensor(name=name, shape=ctx.card.output_shape(name), **spec))
    case_files = [f for f in files if f not in ("network_binary.nb", "nbg_meta.json")]
    rel = lambda name: f"vim3/{name}"  # noqa: E731 - paths in the card are relative to the card
    return Vim3Entry(
        backend=ctx.options.npu_toolkit,
        toolkit=compilation.toolkit,
        toolkit_version=compilation.toolkit_version,
        board=ctx.options.board,
        target=target,
        pid=header.to_json()["pid"],
        nbg_format=header.to_json()["format"],
        quantize=ctx.options.quantize,
        quantizer=compilation.quantizer,
        nbg=rel("network_binary.nb"),
        meta=rel("nbg_meta.json") if "nbg_meta.json" in files else None,
        layout="nchw",
        channel_order=ctx.card.preprocess.channel_order,
        ksnn=ksnn_call(ctx.card.preprocess),
        input=NpuTensor(name=onnx_entry.input, shape=onnx_entry.input_shape,
                        **(_tensor_spec(meta_inputs[0]) if meta_inputs else {})),
        outputs=outputs,
        case=NpuCase(
            name=compilation.case_name,
            files=[rel(f) for f in case_files],
            sources=[rel(f) for f in case_files if f.endswith((".c", ".h"))],
            export_data=rel(f"{compilation.case_name}.export.data"),
            library=f"libnn_{compilation.case_name}.so",
        ),
        files={rel(f): sha256_file(out_dir / f) for f in files},
    )


_QTYPES = {"u8": "uint8", "i8": "int8", "i16": "int16", "u16": "uint16", "f16": "float16", "f32": "float32"}


def _tensor_spec(meta_entry: dict) -> dict:
    """One nbg_meta.json tensor as the card states it: dtype, quantizer and its parameters."""
    quantize = dict(meta_entry.get("quantize") or {})
    qtype = quantize.pop("qtype", None) or meta_entry.get("dtype", "float32")
    spec = {"dtype": _QTYPES.get(qtype, qtype), "toolkit_name": meta_entry.get("name"),
            "toolkit_shape": meta_entry.get("shape"), "format": meta_entry.get("format")}
    if meta_entry.get("quantizer"):
        spec["quantizer"] = meta_entry["quantizer"]
    for key in ("scale", "zero_point", "fl", "max_value", "min_value"):
        if key in quantize:
            spec[key] = quantize[key]
    return spec
