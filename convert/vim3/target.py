"""The `vim3` target: quantize the NCHW ONNX graph and compile it to a VIM3 NPU binary (NBG), checked on the host.

The compile itself runs in the toolkit's environment (acuitylite, or Khadas' SDK in a container); this module
folds the card's normalisation into the graph (the NPU takes decoded pixels), prepares calibration and held-out
evaluation images as the model card says, judges the toolkit's quantized simulation against float (cosine and the
decisions kept), checks the NBG header, and writes OUT/vim3/ plus the card's `targets.vim3`.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgepad.errors import ExportError, InputFileError, ParityError, UsageError
from edgepad.hashing import sha256_file
from edgepad.runtime.card import ModelCard, NpuCase, NpuInput, NpuTensor, OnnxEntry, Vim3Entry

from ..heldout import HELD_OUT_EVERY, decision_agreement, spread_over_folders
from ..parity import compare_outputs, magnitude_atol
from ..parity_inputs import normalized_pixels, read_pixels
from ..report import TargetReport
from .compilation import QUANTIZERS, NpuCompilation
from .compilers import compiler

QUANTIZE_SCHEMES = tuple(QUANTIZERS)
NEEDS_CALIBRATION = {"uint8", "int8", "int16"}
LAYER_TABLE_INPUTS = 4  # per-layer outputs are kept in memory: a few inputs are enough to rank the layers
WORST_LAYERS_NAMED = 3
# the ovxlib case files the board library is built from; IDE project files stay out of OUT
CASE_SKIPPED = re.compile(r"(^\.c?project$|\.vcxproj$)")
AUTO_SCHEMES = ("uint8", "int16")  # --quantize auto: whole-model schemes, after uint8 with its worst layers in int16
# --quantize auto moves the worst layers of the uint8 attempt (by their single-layer cosine) to int16, this many at
# each try, before giving up on uint8 for a whole-model int16 (each try is one compile, about a minute or two)
AUTO_INT16_STEPS = (1, 2, 4, 8)
MIXED = "uint8+int16"
PIXEL_GRAPH = "model.pixels.onnx"


def run(ctx) -> TargetReport:
    """--quantize auto: uint8; if it misses --min-cosine or --min-agreement on the held-out inputs, uint8 with the
    layers of worst single-layer error in int16 (acuitylite's hybrid quantization: 1, 2, 4, 8 of them), then the
    whole model in int16. The first that passes the gates is kept; report.json says what was tried and why."""
    options = ctx.options
    if options.quantize != "auto":
        return _run_once(ctx)
    tried: list[dict] = []
    attempts: list[tuple[str, list[str]]] = [("uint8", [])]
    while attempts:
        scheme, int16_layers = attempts.pop(0)
        first = scheme == "uint8" and not int16_layers
        ctx.options = replace(options, quantize=scheme, int16_layers=tuple(int16_layers),
                              export_below_gates=first and _mixable(options))
        label = f"{MIXED} ({len(int16_layers)} layer(s) in int16)" if int16_layers else scheme
        try:
            report = _run_once(ctx)
        except ParityError as error:
            compilation = getattr(error, "compilation", None)
            tried.append(_attempt(label, int16_layers, getattr(compilation, "log", None), error=str(error)))
            shutil.rmtree(ctx.work_dir / "vim3", ignore_errors=True)
            ctx.card.targets.vim3 = None
            if first:
                units = worst_layer_units(getattr(compilation, "layers", None)) if _mixable(options) else []
                attempts += [("uint8", [lid for unit in units[:count] for lid in unit])
                             for count in AUTO_INT16_STEPS if count <= len(units)]
                attempts.append(("int16", []))
            continue
        finally:
            ctx.options = options
        tried.append(_attempt(label, int16_layers, report.details.get("toolkit_log"), report=report))
        chosen = MIXED if int16_layers else scheme
        if int16_layers:
            entry = ctx.card.targets.vim3
            entry.quantize = MIXED
            entry.quantizer = f"{entry.quantizer}; dynamic_fixed_point int16 on {len(int16_layers)} layer(s)"
            report.details["quantize"] = MIXED
        auto = {"schemes": [AUTO_SCHEMES[0], MIXED, AUTO_SCHEMES[1]], "tried": tried, "chosen": chosen}
        if int16_layers:
            auto["int16_layers"] = list(int16_layers)
            auto["estimated_time_cost"] = _time_cost(tried)
        report.details["auto"] = auto
        ctx.card.targets.vim3.quantize_auto = {"chosen": chosen, "tried": [t["quantize"] for t in tried],
                                               **({"int16_layers": list(int16_layers)} if int16_layers else {})}
        return report
    reasons = " | ".join(t["error"] for t in tried)
    raise ParityError(f"--quantize auto: no scheme passes the gates; {reasons}")


def _mixable(options) -> bool:
    return options.npu_toolkit == "acuitylite"  # Khadas' pegasus job takes no hybrid quantize table here


def worst_layer_units(rows: list[dict] | None) -> list[list[str]]:
    """A per-layer table's layers (toolkit_worker's, from the uint8 attempt), worst single-layer cosine first, each
    with what the NPU fuses into it: a convolution whose output only feeds its activation (row `fused_into`) moves
    with that activation."""
    rows = list(rows or [])
    fused_into: dict[str, list[str]] = {}
    for row in rows:
        if row.get("fused_into"):
            fused_into.setdefault(row["fused_into"], []).append(row["layer"])
    units = [(row["cosine_single"], fused_into.get(row["layer"], []) + [row["layer"]]) for row in rows
             if not row.get("fused_into") and row.get("op") not in ("input", "output")
             and row.get("cosine_single") is not None]
    return [unit for _cosine, unit in sorted(units, key=lambda u: u[0])]


def _attempt(label: str, int16_layers, log: str | None, report: TargetReport | None = None,
             error: str | None = None) -> dict:
    """One try of --quantize auto, with the toolkit performance model's estimate of its NPU time (from the NBG
    export's verification in the toolkit log; None when no NBG was compiled)."""
    entry = {"quantize": label, "passed": error is None, "int16_layers": list(int16_layers),
             "estimated_ms": _estimated_ms(log)}
    if report is not None:
        entry.update(cosine=report.cosine, decision_agreement=report.details.get("decision_agreement"))
    if error is not None:
        entry["error"] = error
    return entry


def _estimated_ms(log: str | None) -> float | None:
    from .npu_lib.perf_estimate import estimate_from_log
    from .toolkit_env import BOARD_TARGETS

    if not log or not Path(log).is_file():
        return None
    estimate = estimate_from_log(Path(log).read_text(errors="replace"), BOARD_TARGETS["vim3"])
    return estimate["ms_per_inference"] if estimate else None


def _time_cost(tried: list[dict]) -> dict:
    """The mixed model's estimated NPU time against the all-uint8 model's (both from the performance model)."""
    uint8 = next((t["estimated_ms"] for t in tried if t["quantize"] == "uint8"), None)
    mixed = tried[-1]["estimated_ms"]
    cost = {"uint8_ms": uint8, "mixed_ms": mixed, "estimate": True,
            "source": "VeriSilicon's performance model (NN_EXT_SHOW_PERF) during the NBG export, not a measurement"}
    if uint8 and mixed:
        cost["ratio"] = round(mixed / uint8, 4)
    return cost


def _run_once(ctx) -> TargetReport:
    from edgepad.runtime.nbg_header import target_pid

    from .nbg_header import check_nbg_header
    from .toolkit_env import BOARD_TARGETS

    options = ctx.options
    if options.quantize not in QUANTIZE_SCHEMES:
        raise UsageError(f"--quantize {options.quantize}: choose one of {', '.join(QUANTIZE_SCHEMES)} or auto")
    target = BOARD_TARGETS[options.board]
    onnx_entry = _nchw_entry(ctx)
    backend = compiler(options.npu_toolkit)
    backend.check_target(target, options)  # fail before any work if the backend cannot compile for the board

    images = select_images(options.calibration, options.eval_images, options.calibration_count,
                           required=options.quantize in NEEDS_CALIBRATION)
    calibration = span_pixel_range([read_pixels(Path(p), ctx.card, "--calibration") for p in images.calibration])
    held_out = [read_pixels(Path(p), ctx.card, images.eval_option) for p in images.evaluation]
    sample_sources = [s for s in ctx.parity_sources if not s.startswith("synthetic:")]
    evaluation = held_out + [read_pixels(Path(p), ctx.card, "--sample-images") for p in sample_sources]
    evaluation_sources = list(images.evaluation) + sample_sources
    if not evaluation:  # float16 without calibration images: the structured synthetic inputs are all we have
        evaluation = synthetic_pixels(ctx.card)
        evaluation_sources = [s for s in ctx.parity_sources if s.startswith("synthetic:")]

    from edgepad.runtime.preprocess import batches

    name = case_name(ctx.card.name or "model")
    out_dir = ctx.work_dir / "vim3"
    out_dir.mkdir(parents=True, exist_ok=True)
    pixel_model, folded = _pixel_graph(ctx, out_dir)
    with ctx.steps.step(f"Compiling for {options.board} ({target}, {options.quantize}) with {backend.DISPLAY_NAME}"):
        compilation = backend.compile(
            onnx_path=pixel_model, input_name=onnx_entry.input, input_shape=onnx_entry.input_shape,
            outputs=onnx_entry.outputs, scheme=options.quantize,
            calibration=batches(calibration, "nchw"), evaluation=batches(evaluation, "nchw"),
            target=target, name=name, options=options, pixel_input=True)
    # raises past the gates, before any file is kept
    try:
        parity = _parity_section(ctx, compilation, evaluation, evaluation_sources, options)
    except ParityError as error:
        error.compilation = compilation  # --quantize auto ranks its layers and prices its NBG
        raise
    nbg = compilation.nbg_dir / "network_binary.nb"
    if not nbg.is_file():
        raise ExportError(f"{backend.DISPLAY_NAME} wrote no network_binary.nb for {target} (log: {compilation.log})")
    expected_major = options.nbg_format if options.npu_toolkit == "acuitylite" else None
    header = check_nbg_header(nbg, target_pid(target), target, expected_major)

    details = {"target": target, "board": options.board, "backend": options.npu_toolkit,
               "toolkit": compilation.toolkit, "toolkit_version": compilation.toolkit_version,
               "quantize": options.quantize, "quantizer": compilation.quantizer, "nbg": header.to_json(),
               "calibration_sources": list(images.calibration), "eval_sources": evaluation_sources,
               "held_out": images.how, "calibration_images": len(calibration),
               "input_in_graph": folded, "toolkit_log": compilation.log,
               "simulation_files": compilation.simulation_files}
    if compilation.hybrid:
        details["int16_layers"] = compilation.hybrid["int16_layers"]
        details["dtype_converters"] = len(compilation.hybrid["converters"])

    measured, extra = parity
    details.update(extra)
    files = _copy_outputs(compilation, out_dir)
    ctx.card.targets.vim3 = _card_entry(ctx, compilation, out_dir, files, onnx_entry, target, header, folded)
    report = TargetReport("vim3", measured, files=[f"vim3/{f}" for f in files], details=details)
    # edgepad's NPU library (libnn_<case>.so) from the case, and its run in the emulator (convert/npu_lib/);
    # the emulator comes with acuitylite, so the Khadas SDK backend leaves the library to the board build
    if options.npu_toolkit == "acuitylite":
        from .npu_lib import build_npu_library

        try:
            report.checks.append(build_npu_library(ctx, compilation, evaluation, evaluation_sources,
                                                   out_dir, target, target_pid(target)))
        except ParityError as error:
            error.compilation = compilation  # --quantize auto prices the NBG it compiled
            raise
    return report


def span_pixel_range(calibration: list[np.ndarray]) -> list[np.ndarray]:
    """The calibration images spanning 0..255 together, so the input tensor's calibrated range is the pixels' own.

    The toolkit worker forces the input tensor to hold 0..255 when calibration gave a narrower range, but acuitylite
    does not quantize the first layer's bias again for that input scale: measured on PNet at 55x55 calibrated with
    pyramid images spanning 1..251, the NBG export fails `vsi_nn_QuantCheck` (input_scale * weight_scale !=
    bias_scale). So the darkest pixel of the set becomes 0 and the brightest 255 (one value each, in a copy)."""
    if not calibration:
        return calibration
    stacked = [np.array(x, np.float32) for x in calibration]
    low = min(range(len(stacked)), key=lambda i: float(stacked[i].min()))
    high = max(range(len(stacked)), key=lambda i: float(stacked[i].max()))
    if float(stacked[low].min()) > 0:
        flat = stacked[low].reshape(-1)
        flat[int(np.argmin(flat))] = 0.0
    if float(stacked[high].max()) < 255:
        flat = stacked[high].reshape(-1)
        flat[int(np.argmax(flat))] = 255.0
    return stacked


def _pixel_graph(ctx, out_dir: Path) -> tuple[Path, dict]:
    """OUT/vim3/model.pixels.onnx: the NCHW graph with the card's normalisation inside, checked against the original
    graph in onnxruntime on pixel images (float32: only the summation order may differ)."""
    import onnx

    from edgepad.runtime.preprocess import batches

    from ..onnx.onnx_runner import run_onnx
    from .pixel_graph import pixel_input_graph

    preprocess = ctx.card.preprocess
    model, how = pixel_input_graph(onnx.load(str(ctx.onnx_nchw_path)), preprocess.mean, preprocess.std)
    path = out_dir / PIXEL_GRAPH
    path.write_bytes(model.SerializeToString())
    images = synthetic_pixels(ctx.card)
    reference = ctx.onnx_nchw_outputs(batches([normalized_pixels(x, ctx.card) for x in images], "nchw"))
    candidate = run_onnx(str(path), batches(images, "nchw"))
    parity = compare_outputs(reference, _like(reference, candidate), reference_name=ctx.onnx_nchw_path.name,
                             candidate_name=f"{PIXEL_GRAPH} (normalisation inside, pixels in)",
                             atol=magnitude_atol(reference, ctx.options.atol))
    parity.raise_if_failed(str(ctx.options.model), hint="folding the card's mean/std into the graph went wrong")
    return path, {"file": f"vim3/{PIXEL_GRAPH}", "how": how, "mean": list(preprocess.mean),
                  "std": list(preprocess.std), "max_abs_vs_normalised_graph": parity.max_abs}


@dataclass
class ImageSelection:
    calibration: list[str]
    evaluation: list[str]
    eval_option: str
    how: str


def select_images(calibration_dir, eval_dir, count: int, required: bool) -> ImageSelection:
    """Calibration files and disjoint evaluation files: --eval-images DIR, or every HELD_OUT_EVERY-th image of the
    calibration folder, which then never calibrates."""
    from ..heldout import split_held_out
    from ..parity_inputs import image_files

    if calibration_dir is None:
        if required:
            raise InputFileError("--calibration: the vim3 target quantizes with real images and none were given; pass "
                                 "--calibration DIR (jpg/png like the model's inputs), or --quantize float16")
        evaluation = [str(p) for p in image_files(eval_dir, "--eval-images")] if eval_dir is not None else []
        return ImageSelection([], evaluation, "--eval-images", "--eval-images" if eval_dir else "none")
    if count < 1:
        raise UsageError(f"--calibration-count {count}: must be at least 1")
    files = image_files(calibration_dir, "--calibration")
    if eval_dir is not None:
        evaluation = image_files(eval_dir, "--eval-images")
        calibration = spread_over_folders(files, count)
        _require_disjoint(calibration, evaluation)
        return ImageSelection([str(p) for p in calibration], [str(p) for p in evaluation], "--eval-images",
                              f"--eval-images {eval_dir}")
    rest, held = split_held_out(files)
    return ImageSelection([str(p) for p in spread_over_folders(rest, count)], [str(p) for p in held], "--calibration",
                          f"every {HELD_OUT_EVERY}th image (or sub-folder) of --calibration, never used to calibrate")


def _require_disjoint(calibration: list[Path], evaluation: list[Path]) -> None:
    by_content = {sha256_file(p): p for p in calibration}
    shared = [(p, by_content[sha256_file(p)]) for p in evaluation if sha256_file(p) in by_content]
    if shared:
        got, used = shared[0]
        raise InputFileError(f"--eval-images: {len(shared)} image(s) are also calibration images (e.g. {got} = "
                             f"{used}); judge the model on images it was not calibrated with: give folders with no "
                             "image in common")


def synthetic_pixels(card: ModelCard) -> list[np.ndarray]:
    from ..parity_inputs import image_pixels, synthetic_images

    spec = card.input
    return [image_pixels(image, card) for image in synthetic_images(spec.height, spec.width, spec.channels)]


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


def _parity_section(ctx, compilation: NpuCompilation, evaluation, sources, options) -> tuple[dict, dict]:
    """(parity figures of the quantized model against float, the decisions kept, the import check and per-layer
    table): the toolkit's float import against onnxruntime, then its quantized simulation against float on the
    held-out inputs, mean and worst cosine, and the share of inputs whose decision stays float's. Raises past the
    gates."""
    if compilation.float_outputs is None or compilation.quantized_outputs is None:
        return {}, {"parity": f"not measured: {compilation.toolkit} gave no simulation outputs"}
    from edgepad.runtime.preprocess import batches

    # The toolkit's float import of the pixel graph against onnxruntime running the original (normalised) graph
    reference = ctx.onnx_nchw_outputs(batches([normalized_pixels(x, ctx.card) for x in evaluation], "nchw"))
    imported = compare_outputs(reference, _like(reference, compilation.float_outputs),
                               reference_name="onnxruntime (model.nchw.onnx, normalised inputs)",
                               candidate_name=f"{compilation.toolkit} float import (pixel inputs)",
                               atol=magnitude_atol(reference, options.atol))
    imported.raise_if_failed(f"{options.model}", hint=f"the toolkit imported the graph wrongly; log: {compilation.log}")
    quantized_outputs = _like(reference, compilation.quantized_outputs)
    quantized = compare_outputs(reference, quantized_outputs, reference_name="onnxruntime float",
                                candidate_name=f"{compilation.toolkit} {options.quantize} simulation",
                                atol=None, min_cosine=options.min_cosine)
    parity = quantized.to_json()
    parity["cosine_min"] = min((o["cosine_min"] for o in parity["outputs"]), default=1.0)
    first = next(iter(reference))
    kept = decision_agreement(np.stack(reference[first]), np.stack(quantized_outputs[first]), ctx.card, sources)
    agreement, min_agreement = kept.share, options.min_agreement
    agreement_ok = agreement is None or min_agreement is None or agreement >= min_agreement
    parity["passed"] = quantized.passed and agreement_ok
    extra = {"decision_agreement": agreement, "decision": _decision_rule(ctx.card, agreement),
             "min_agreement": min_agreement, "flipped": kept.flipped, "import": imported.to_json(),
             "layers": compilation.layers, "layer_inputs": min(LAYER_TABLE_INPUTS, len(evaluation))}
    if compilation.input_quantization is not None:
        extra["input_quantization"] = compilation.input_quantization
    if compilation.requantization is not None:
        extra["requantization"] = compilation.requantization
    if not parity["passed"]:
        raise ParityError(_quantization_failure(quantized, compilation, options, len(evaluation), agreement,
                                                kept.flipped))
    return parity, extra


def _decision_rule(card: ModelCard, agreement) -> str | None:
    if agreement is None:
        return None
    labels = [str(label).lower() for label in card.labels or []]
    if "live" in labels and card.threshold is not None:
        return f"live/spoof at threshold {card.threshold:g} (spoof when 1 - P(live) reaches it)"
    return "top-1 class"


def worst_layers(layers: list[dict], count: int = WORST_LAYERS_NAMED) -> list[dict]:
    """Where quantization hurts most on its own (single-layer cosine), leaving out tensors the NPU fuses away."""
    candidates = [row for row in layers if "fused_into" not in row and row.get("cosine_single") is not None]
    return sorted(candidates, key=lambda row: row["cosine_single"])[:count]


def _quantization_failure(quantized, compilation: NpuCompilation, options, inputs: int, agreement=None,
                          flipped=()) -> str:
    message = (f"vim3 {options.quantize}: the quantized model reaches mean cosine {quantized.cosine:.4f} against float "
               f"(--min-cosine {options.min_cosine:g})")
    if agreement is not None:
        message += (f" and keeps float's decision on {agreement:.1%} of {inputs} held-out inputs "
                    f"(--min-agreement {options.min_agreement:g})")
    else:
        message += f" on {inputs} held-out inputs"
    if flipped:
        shown = ", ".join(Path(f).name if not f.startswith("synthetic:") else f for f in flipped[:8])
        message += f"; decision flipped on {len(flipped)}: {shown}" + (" ..." if len(flipped) > 8 else "")
    worst = worst_layers(compilation.layers)
    if worst:
        message += "; worst layers (single-layer / accumulated cosine): " + ", ".join(
            f"'{row['layer']}' ({row['op']}) {row['cosine_single']:.4f}/{row['cosine_accumulated']:.4f}"
            for row in worst)
    if compilation.layers_file:
        message += f" (full table: {compilation.layers_file})"
    message += ("; try --quantize auto (keeps the worst layers in int16 if that passes, else the whole model), "
                "--quantize int16, more or more varied --calibration images (--calibration-count), or a model "
                "trained to the end (an untrained net amplifies rounding)")
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
                target: str, header, folded: dict) -> Vim3Entry:
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
        nbg_format=header.to_json()["format"],  # which driver can load it depends on this and the toolkit version
        quantize=ctx.options.quantize,
        quantizer=compilation.quantizer,
        nbg=rel("network_binary.nb"),
        meta=rel("nbg_meta.json") if "nbg_meta.json" in files else None,
        layout="nchw",
        channel_order=ctx.card.preprocess.channel_order,
        input=NpuTensor(name=onnx_entry.input, shape=onnx_entry.input_shape,
                        **(_tensor_spec(meta_inputs[0]) if meta_inputs else {})),
        # what the NPU's input tensor takes: the decoded image's pixel values, the normalisation is in the graph
        npu_input=_npu_input(ctx.card, meta_inputs[0] if meta_inputs else {}, onnx_entry.input_shape),
        preprocess_in_graph=folded,
        # KSNN's NPU_SetInput_* take float pixels and quantize them with the tensor's scale/zero point: mean/std
        # null, the graph normalises
        ksnn=ksnn_call(ctx.card.preprocess, pixel_input=True),
        gates={"min_cosine": ctx.options.min_cosine, "min_agreement": ctx.options.min_agreement},
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


def _npu_input(card: ModelCard, meta_input: dict, shape) -> NpuInput:
    spec = _tensor_spec(meta_input) if meta_input else {}
    return NpuInput(values="pixels", range=[0, 255], layout="nchw", shape=list(shape),
                    channel_order=card.preprocess.channel_order, dtype=spec.get("dtype", "float32"),
                    scale=spec.get("scale"), zero_point=spec.get("zero_point"), fl=spec.get("fl"))


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
