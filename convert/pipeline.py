"""`edgepad convert`: a Keras .h5/.keras/SavedModel or an .onnx file (convert/sources.py) -> ONNX -> further
targets, each checked against the step before and the original.

Each target is a sub-package with a `target` module (convert/onnx/target.py, convert/caffe/target.py,
convert/vim3/target.py, convert/tflite/target.py) whose `run(ctx: ConvertContext) -> TargetReport` writes its files
into ctx.work_dir, adds what the board needs to ctx.card.targets.<name>, and returns its parity figures, files and
warnings; report.py renders them to report.json. A new target is one more line in TARGETS.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from edgepad import __version__
from edgepad.errors import UsageError
from edgepad.hashing import sha256_file
from edgepad.progress import Steps
from edgepad.quiet_tensorflow import import_tensorflow
from edgepad.runtime.card import CHANNEL_ORDERS, InputSpec, ModelCard, OnnxEntry, OutputSpec, Preprocess, Source
from edgepad.staging import staged_output_dir

from .heldout import DEFAULT_MIN_AGREEMENT
from .parity import FLOAT32_ATOL, QUANTIZED_MIN_COSINE
from .report import ConvertReport, TargetReport, write_report

# name -> the module with its `run(ctx)`, imported only when asked for: `--to onnx` never loads the NPU toolkit code.
TARGETS: dict[str, str] = {
    "onnx": "edgepad.convert.onnx.target",
    "caffe": "edgepad.convert.caffe.target",
    "vim3": "edgepad.convert.vim3.target",
    "tflite": "edgepad.convert.tflite.target",
}
DEFAULT_TARGETS = ("onnx", "caffe")
NCHW_TARGETS = {"caffe", "vim3"}  # what Caffe and the NPU take


@dataclass
class ConvertOptions:
    model: Path
    out: Path
    targets: tuple[str, ...] = DEFAULT_TARGETS
    custom_objects: Path | None = None
    output_layer: str | None = None
    input_shape: tuple[int, int, int] | None = None
    layout: str | None = None  # model.onnx's input layout (default nhwc); for an .onnx input: the graph's, if unclear
    mean: tuple[float, ...] = (127.5,)
    std: tuple[float, ...] = (127.5,)
    channel_order: str | None = None  # rgb, bgr, gray, rgba, bgra; None: from the input's channels (3: rgb)
    labels: tuple[str, ...] | None = None
    task: str | None = None  # "classify" or "embed": overrides the guess from the model's outputs
    threshold: float = 0.5
    match_threshold: float | None = None  # embedding models: same person below this distance (unit-sphere Euclidean)
    sample_images: Path | None = None
    atol: float = FLOAT32_ATOL
    force: bool = False
    # vim3 target
    board: str = "vim3"
    quantize: str = "uint8"
    calibration: Path | None = None
    calibration_count: int = 32
    eval_images: Path | None = None  # quantized targets: judged on these (default: held out from --calibration)
    min_cosine: float = QUANTIZED_MIN_COSINE
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    npu_toolkit: str = "acuitylite"
    sdk: Path | None = None
    nbg_format: int = 1  # the NBG header's format major: 1 as Khadas' VIM3 NBGs (see toolkit_env.NBG_FORMAT_SDKS)
    int16_layers: tuple[str, ...] = ()  # mixed precision (acuitylite): these toolkit layers in int16, the rest uint8
    export_below_gates: bool = False  # compile the NBG even when the simulation misses --min-cosine (auto's uint8)


@dataclass
class ConvertContext:
    """What every target gets: the staged output folder, the card so far, and the reference outputs."""

    options: ConvertOptions
    work_dir: Path
    card: ModelCard
    steps: Steps
    onnx_nchw_path: Path | None
    parity_inputs: list[np.ndarray]  # normalised (H, W, C) float32
    parity_sources: list[str]
    keras_outputs: dict[str, list[np.ndarray]]  # per output name, per input: the reference outputs
    keras_model: object = None  # the loaded (and cut) Keras model, for targets that convert from it (tflite)
    warnings: list[str] = field(default_factory=list)
    reference_name: str = "keras"  # what keras_outputs came from: the Keras model, or onnxruntime on an .onnx input

    def inputs_as(self, layout: str) -> list[np.ndarray]:
        from edgepad.runtime.preprocess import batches

        return batches(self.parity_inputs, layout)

    def run_keras(self, inputs: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
        """The original Keras model's outputs on normalised (H, W, C) inputs: the float reference."""
        return _run_keras(self.keras_model, inputs, list(self.keras_outputs))

    def onnx_nchw_outputs(self, inputs_nchw: list[np.ndarray] | None = None) -> dict[str, list[np.ndarray]]:
        """onnxruntime's outputs of the NCHW ONNX graph: the reference of every NCHW target."""
        from .onnx.onnx_runner import run_onnx

        return run_onnx(str(self.onnx_nchw_path), inputs_nchw or self.inputs_as("nchw"))


@dataclass
class ConvertResult:
    out: Path
    card: ModelCard
    report: ConvertReport
    timings: dict[str, float]
    warnings: list[str]

    @property
    def passed(self) -> bool:
        return self.report.passed


def parse_targets(text: str, choices=None) -> tuple[str, ...]:
    """--to's comma-separated targets, onnx first; `choices` (default: every registered target) limits them."""
    choices = tuple(choices or TARGETS)
    targets = tuple(t.strip().lower() for t in text.split(",") if t.strip())
    unknown = [t for t in targets if t not in choices]
    if unknown or not targets:
        raise UsageError(f"--to {text}: unknown target {', '.join(unknown) or '(none)'}; "
                         f"choose from {', '.join(choices)}")
    if "onnx" not in targets:
        targets = ("onnx",) + targets  # every other target starts from the checked ONNX graph
    return tuple(sorted(set(targets), key=list(TARGETS).index))


def convert_model(options: ConvertOptions, steps: Steps | None = None) -> ConvertResult:
    """The Python API behind `edgepad convert`. Writes options.out completely or not at all."""
    from .sources import detect_source, prepare_process

    steps = steps or Steps(quiet=True)
    if options.layout not in (None, "nhwc", "nchw"):
        raise UsageError(f"--layout {options.layout}: choose nhwc or nchw")
    if options.channel_order is not None and options.channel_order not in CHANNEL_ORDERS:
        raise UsageError(f"--channel-order {options.channel_order}: choose one of {', '.join(CHANNEL_ORDERS)}")
    targets = parse_targets(",".join(options.targets))
    runners = {name: target_runner(name) for name in targets}

    info = detect_source(options.model)
    prepare_process(info, targets)
    if info.is_keras and options.layout is None:
        options = replace(options, layout="nhwc")
    import_tensorflow()
    with staged_output_dir(options.out, options.force) as work_dir:
        ctx = _onnx_stage(options, info, work_dir, steps)
        report = ConvertReport(__version__, str(options.model))
        for name in targets:
            target = runners[name](ctx)
            report.targets.append(target)
            ctx.warnings.extend(target.warnings)
        ctx.card.sha256 = {p.name: sha256_file(p) for p in sorted(work_dir.rglob("*")) if p.is_file()}
        ctx.card.save(work_dir / "edgepad.json")
        report.timings_s = dict(steps.timings)
        report.warnings = ctx.warnings
        write_report(work_dir / "report.json", report)
    return ConvertResult(options.out, ctx.card, report, dict(steps.timings), ctx.warnings)


def _onnx_stage(options: ConvertOptions, info, work_dir: Path, steps: Steps) -> ConvertContext:
    """Load the model, export the ONNX graph(s), compute the reference outputs. The 'onnx' target checks them.

    The reference is the Keras model's outputs, or for an .onnx input onnxruntime's on the original file."""
    from .onnx.keras_loading import cut_at_layer, load_custom_objects, output_names
    from .onnx.keras_to_onnx import export_onnx, static_input_shape
    from .parity_inputs import parity_images
    from .sources import load_keras, prepare_onnx

    onnx_source = model = None
    with steps.step(f"Loading {info.describe()}"):
        if info.is_keras:
            custom_objects = load_custom_objects(options.custom_objects)
            model = cut_at_layer(load_keras(info, custom_objects), info, options.output_layer)
            hwc = static_input_shape(model, options.input_shape, str(info.path))
            names = output_names(model)
            name = model.name
        else:
            onnx_source = prepare_onnx(info.path, options.input_shape, options.layout,
                                       bool(NCHW_TARGETS & set(options.targets)))
            options = replace(options, layout=onnx_source.layout)
            hwc, name = onnx_source.hwc, onnx_source.name

    card = _new_card(options, info, name, hwc)
    if onnx_source is not None:
        card.source.layout = {"value": onnx_source.layout, "from": onnx_source.layout_from}
    with steps.step("Preparing parity inputs"):
        inputs, sources = parity_images(card, options.sample_images)
        keras_outputs = (onnx_source.reference(inputs) if onnx_source is not None
                         else _run_keras(model, inputs, names))
    card.outputs = [OutputSpec(n, [int(d) for d in v[0].shape]) for n, v in keras_outputs.items()]
    head = classifier_head(keras_outputs, options.labels, options.task)
    card.task = head.task
    if head.task == "classifier":
        card.head, card.labels, card.live_index = head.head, head.labels, head.live_index
        card.threshold = options.threshold
    elif options.match_threshold is not None:
        card.match_threshold = options.match_threshold

    if onnx_source is not None:
        exports = onnx_source.exports
    else:
        exports = {options.layout: None}
        if NCHW_TARGETS & set(options.targets) and options.layout != "nchw":
            exports["nchw"] = None
        for layout in exports:
            with steps.step(f"Exporting ONNX ({layout.upper()}) with tf2onnx"):
                exports[layout] = export_onnx(model, hwc, names, layout)
    main = exports[options.layout]
    main_path = work_dir / "model.onnx"
    main_path.write_bytes(main.model.SerializeToString())
    nchw_path = main_path if options.layout == "nchw" else None
    if "nchw" in exports and options.layout != "nchw":
        nchw_path = work_dir / "model.nchw.onnx"
        nchw_path.write_bytes(exports["nchw"].model.SerializeToString())

    card.targets.onnx = OnnxEntry(file=main_path.name, layout=options.layout, input=main.input_name,
                                  input_shape=main.input_shape, outputs=main.output_names,
                                  simplified=main.simplified)
    if nchw_path is not None and nchw_path != main_path:
        nchw = exports["nchw"]
        card.targets.onnx_nchw = OnnxEntry(file=nchw_path.name, layout="nchw", input=nchw.input_name,
                                           input_shape=nchw.input_shape, outputs=nchw.output_names,
                                           simplified=nchw.simplified)
    ctx = ConvertContext(options, work_dir, card, steps, nchw_path, inputs, sources,
                         {n: v for n, v in keras_outputs.items()}, keras_model=model)
    if onnx_source is not None:
        ctx.reference_name = f"onnxruntime:{info.path.name}"
    for export in exports.values():
        ctx.warnings.extend(export.warnings)
    return ctx


def _run_keras(model, inputs: list[np.ndarray], names: list[str]) -> dict[str, list[np.ndarray]]:
    results: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for x in inputs:
        outputs = model(x[None], training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        for name, value in zip(names, outputs, strict=True):
            results[name].append(np.asarray(value))
    return results


# A one-output model with at most this many units that is no probability distribution is guessed to be a logits
# head; wider ones are embeddings unless --labels names their classes or --task classify says so.
MAX_GUESSED_LOGITS = 2
LIVE_NAMES = ("live", "real", "genuine", "bonafide", "bona fide")


@dataclass
class Head:
    """The card's task and, for a classifier, its head, labels and which class means live."""

    task: str  # "classifier" or "embedding"
    head: str | None = None
    labels: list[str] | None = None
    live_index: int | None = None


def classifier_head(outputs: dict[str, list[np.ndarray]], labels: tuple[str, ...] | None,
                    task: str | None = None) -> Head:
    """The card's task and, for a classifier, its head and which output means live.

    head "softmax": per-class probabilities; "sigmoid": one unit, the probability of the second label;
    "logits": raw class scores (softmax over them; one unit: sigmoid). `live_index` is the class that means live
    (for "sigmoid": 1 when the unit's label, the second, is live, else 0). `task` ("classify"/"embed", from
    --task) overrides the guess, which is made from the outputs on the parity inputs."""
    if task not in (None, "classify", "embed"):
        raise UsageError(f"--task {task}: choose classify or embed")
    values = np.concatenate(next(iter(outputs.values()))) if len(outputs) == 1 else None
    shaped = values is not None and values.ndim == 2
    units = values.shape[-1] if shaped else 0
    if task == "embed":
        return Head("embedding")
    named = bool(labels) and len(labels) == max(units, 2)
    if task is None and not (shaped and (units <= MAX_GUESSED_LOGITS or named or _is_distribution(values))):
        return Head("embedding")
    if not shaped:
        raise UsageError(f"--task classify: the model has {len(outputs)} outputs of shapes "
                         f"{[list(v[0].shape) for v in outputs.values()]}; a classifier has one (1, classes) output")
    if units == 1:
        head = "sigmoid" if np.all((values >= 0) & (values <= 1)) else "logits"
    else:
        head = "softmax" if _is_distribution(values) else "logits"
    classes = 2 if units == 1 else units
    if labels and len(labels) != classes:
        raise UsageError(f"--labels {','.join(labels)}: {len(labels)} names for a {head} head of {units} unit(s) "
                         f"({classes} classes); give {classes} names")
    names = list(labels) if labels else (["live", "spoof"] if classes == 2 else [str(i) for i in range(classes)])
    live = [i for i, name in enumerate(names) if name.strip().lower() in LIVE_NAMES]
    if labels and len(live) != 1:
        raise UsageError(f"--labels {','.join(labels)}: name exactly one class 'live' (the class a real face gets)")
    return Head("classifier", head, names, live[0] if live else 0)


def _is_distribution(values: np.ndarray) -> bool:
    """Rows of at least two non-negative values summing to 1 on every parity input (a softmax head)."""
    return values.shape[-1] >= 2 and bool(np.all(values >= 0) and np.allclose(values.sum(-1), 1.0, atol=1e-3))


def _new_card(options: ConvertOptions, info, model_name: str, hwc) -> ModelCard:
    h, w, c = hwc
    from edgepad.runtime.preprocess import as_channel_vector, default_channel_order

    order = options.channel_order or default_channel_order(c)
    if CHANNEL_ORDERS.get(order) != c:
        fits = [name for name, count in CHANNEL_ORDERS.items() if count == c]
        raise UsageError(f"--channel-order {order}: the model's input has {c} channel(s); "
                         + (f"choose {' or '.join(fits)}" if fits else "edgepad reads images as 1, 3 or 4 channels"))

    try:
        mean = as_channel_vector(options.mean, c, "--mean").tolist()
        std = as_channel_vector(options.std, c, "--std").tolist()
    except ValueError as error:
        raise UsageError(f"{error}; give one value or {c} comma-separated values") from None
    if min(std) <= 0:
        raise UsageError(f"--std {','.join(map(str, options.std))}: every value must be positive")
    return ModelCard(
        name=model_name,
        source=Source(file=info.path.name, sha256=sha256_file(info.hashed_file), kind=info.kind,
                      keras_version=info.keras_version, loader=info.backend, output_layer=options.output_layer),
        input=InputSpec(height=int(h), width=int(w), channels=int(c), dtype="float32"),
        preprocess=Preprocess(mean=mean, std=std, channel_order=order, resize="bilinear"),
    )


def target_runner(name: str) -> Callable[[ConvertContext], TargetReport]:
    """The target's `run`, imported only when asked for (`--to onnx` never loads the NPU toolkit code)."""
    return importlib.import_module(TARGETS[name]).run
