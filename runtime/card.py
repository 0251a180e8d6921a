"""The model card (`edgepad.json`): the contract between convert/, deploy/, data/ and the board runtime.

Read, written and validated here only. Python 3.8 and the standard library: this file goes to the board.

    ModelCard.load(folder or path) -> ModelCard      card.save(path)      card.to_dict() / ModelCard.from_dict(d)

Shape (CARD_VERSION 1; a card without `card_version`, as edgepad wrote before it, is version 1 — it wrote
`edgepad_card: 1`):

    card_version, name, source {file, sha256, kind, layout, keras_version, loader, output_layer},
    input {height, width, channels, dtype}, preprocess {mean[], std[], channel_order (CHANNEL_ORDERS), resize},
    outputs [{name, shape}], task (classifier|embedding), head, labels [], live_index, threshold, match_threshold,
    targets {onnx, onnx_nchw, onnx_open: OnnxEntry; caffe: CaffeEntry; vim3: Vim3Entry (with ksnn: KsnnCall);
             tflite: TfliteEntry; any other name: a dict},
    mtcnn {net, package, note; PNet on the NPU: frame_sizes, min_face_size, scale_factor, pyramid_sizes} (detector
    nets only), sha256 {file name: sha256}.

Every object keeps keys it does not know in `extra` (written back unchanged), so a field added by a newer
edgepad of the same card version survives a round trip through an older one.
"""
from __future__ import annotations

import json
import os
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Dict, List, Optional

CARD_VERSION = 1
CARD_FILE = "edgepad.json"
# channel order -> how many channels the model takes (preprocess.py converts a decoded image to each)
CHANNEL_ORDERS = {"rgb": 3, "bgr": 3, "gray": 1, "rgba": 4, "bgra": 4}
_LEGACY_VERSION_KEY = "edgepad_card"  # what edgepad wrote before `card_version`


class CardError(ValueError):
    """A model card that cannot be read: the message names the file, the key and the fix."""


def _from(cls, data: Any, where: str, nested: Optional[Dict[str, Any]] = None):
    """An instance of dataclass `cls` from `data`; required fields must be there; unknown keys go to `extra`."""
    if not isinstance(data, dict):
        raise CardError(f"{where}: expected an object, found {type(data).__name__}")
    names = [f.name for f in fields(cls) if f.name != "extra"]
    missing = [f.name for f in fields(cls)
               if f.default is MISSING and f.default_factory is MISSING and f.name not in data]  # type: ignore[misc]
    if missing:
        raise CardError(f"{where}: missing {', '.join(missing)}")
    kwargs = {name: data[name] for name in names if name in data}
    for name, build in (nested or {}).items():
        if kwargs.get(name) is not None:
            kwargs[name] = build(kwargs[name], f"{where}.{name}")
    if any(f.name == "extra" for f in fields(cls)):
        kwargs["extra"] = {k: v for k, v in data.items() if k not in names}
    return cls(**kwargs)


def _to(obj) -> Dict[str, Any]:
    """The JSON object of a card dataclass: fields in order (None left out), then its extra keys."""
    result: Dict[str, Any] = {}
    for f in fields(obj):
        if f.name == "extra":
            continue
        value = getattr(obj, f.name)
        if value is not None:
            result[f.name] = _plain(value)
    result.update(getattr(obj, "extra", {}))
    return result


def _plain(value):
    if hasattr(value, "__dataclass_fields__"):
        return value.to_dict() if hasattr(value, "to_dict") else _to(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _Part:
    """to_dict() for every part of the card."""

    def to_dict(self) -> Dict[str, Any]:
        return _to(self)


def _list_of(cls):
    def build(items, where):
        if not isinstance(items, list):
            raise CardError(f"{where}: expected a list, found {type(items).__name__}")
        return [cls.from_dict(item, f"{where}[{i}]") for i, item in enumerate(items)]
    return build


@dataclass
class Source(_Part):
    """The model file the card was converted from (.h5, .keras, a SavedModel folder or .onnx)."""

    file: Optional[str] = None
    sha256: Optional[str] = None
    kind: Optional[str] = None  # what sources.py detected: h5, keras, savedmodel, onnx
    layout: Optional[Dict[str, str]] = None  # an .onnx input: {"value": nhwc|nchw, "from": graph|--layout ...}
    keras_version: Optional[str] = None
    loader: Optional[str] = None
    output_layer: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="source") -> "Source":
        return _from(cls, data, where)


@dataclass
class InputSpec(_Part):
    height: int
    width: int
    channels: int = 3
    dtype: str = "float32"
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="input") -> "InputSpec":
        spec = _from(cls, data, where)
        for name in ("height", "width", "channels"):
            if not isinstance(getattr(spec, name), int) or getattr(spec, name) < 1:
                raise CardError(f"{where}.{name}: {getattr(spec, name)!r} is not a positive whole number")
        return spec


@dataclass
class Preprocess(_Part):
    """image -> model input: resize to the input size, reorder channels, (x - mean) / std per channel."""

    mean: List[float] = field(default_factory=lambda: [127.5])
    std: List[float] = field(default_factory=lambda: [127.5])
    channel_order: str = "rgb"
    resize: str = "bilinear"
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="preprocess") -> "Preprocess":
        spec = _from(cls, data, where)
        if spec.channel_order not in CHANNEL_ORDERS:
            raise CardError(f"{where}.channel_order: '{spec.channel_order}' is none of {', '.join(CHANNEL_ORDERS)}")
        spec.mean = [float(v) for v in _as_list(spec.mean)]
        spec.std = [float(v) for v in _as_list(spec.std)]
        return spec


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


@dataclass
class OutputSpec(_Part):
    name: str
    shape: Optional[List[Optional[int]]] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="outputs[]") -> "OutputSpec":
        return _from(cls, data, where)


@dataclass
class OnnxEntry(_Part):
    """targets.onnx (model.onnx), targets.onnx_nchw (the NCHW graph Caffe and the NPU start from) and
    targets.onnx_open (detector nets: batch, and for PNet H and W, left open)."""

    file: str
    layout: str = "nhwc"
    input: Optional[str] = None
    input_shape: Optional[List[Optional[int]]] = None
    outputs: List[str] = field(default_factory=list)
    simplified: Optional[bool] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="targets.onnx") -> "OnnxEntry":
        return _from(cls, data, where)


@dataclass
class CaffeEntry(_Part):
    """targets.caffe: the prototxt/caffemodel pair (NCHW) and the Caffe blob names of the card's outputs."""

    prototxt: str = "model.prototxt"
    caffemodel: str = "model.caffemodel"
    input: Optional[str] = None
    input_shape: Optional[List[int]] = None
    outputs: List[str] = field(default_factory=list)  # Caffe blob per output, in the card's output order
    output_names: List[str] = field(default_factory=list)  # the ONNX names of those outputs
    layout: str = "nchw"
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="targets.caffe") -> "CaffeEntry":
        return _from(cls, data, where)


@dataclass
class NpuTensor(_Part):
    """One NPU tensor as the NBG's metadata states it: shape, dtype and its quantization."""

    name: Optional[str] = None
    shape: Optional[List[Optional[int]]] = None
    dtype: Optional[str] = None
    quantizer: Optional[str] = None
    scale: Optional[float] = None
    zero_point: Optional[int] = None
    fl: Optional[int] = None  # dynamic fixed point: fractional bits
    max_value: Optional[float] = None
    min_value: Optional[float] = None
    toolkit_name: Optional[str] = None
    toolkit_shape: Optional[List[int]] = None
    format: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="targets.vim3.input") -> "NpuTensor":
        return _from(cls, data, where)


@dataclass
class NpuCase(_Part):
    """The toolkit's ovxlib case the board library is built from."""

    name: str
    files: List[str] = field(default_factory=list)
    sources: List[str] = field(default_factory=list)
    export_data: Optional[str] = None
    library: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="targets.vim3.case") -> "NpuCase":
        return _from(cls, data, where)


@dataclass
class NpuLibrary(_Part):
    """edgepad's libnn_<case>.so: where it is (None: sources only, build it on the board) and how to build it."""

    case: str
    target: Optional[str] = None
    library: Optional[str] = None
    library_machine: Optional[str] = None
    build_script: Optional[str] = None
    sources: List[str] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="targets.vim3.npu_library") -> "NpuLibrary":
        return _from(cls, data, where)


@dataclass
class KsnnCall(_Part):
    """targets.vim3.ksnn: how a KSNN script calls nn_inference for this model and what it feeds (see
    runtime/backends/ksnn_backend.py's ksnn_call); mean/std None when the graph takes raw pixels."""

    platform: str = "ONNX"
    reorder: str = "2 1 0"
    channel_order: str = "RGB"
    layout: str = "chw"
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="targets.vim3.ksnn") -> "KsnnCall":
        return _from(cls, data, where)

    def to_dict(self) -> Dict[str, Any]:
        data = _to(self)  # mean/std null is meaningful (raw pixels): written out
        return {**data, "mean": self.mean, "std": self.std}


@dataclass
class NpuInput(_Part):
    """targets.vim3.npu_input: what the NPU's input tensor takes. "pixels": the decoded image's values (0..255,
    resized, in the card's channel order); the card's mean/std are folded into the graph (preprocess_in_graph)."""

    values: str = "pixels"
    range: Optional[List[float]] = None
    layout: str = "nchw"
    shape: Optional[List[Optional[int]]] = None
    channel_order: Optional[str] = None
    dtype: Optional[str] = None
    scale: Optional[float] = None
    zero_point: Optional[int] = None
    fl: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="targets.vim3.npu_input") -> "NpuInput":
        return _from(cls, data, where)


@dataclass
class Vim3Entry(_Part):
    """targets.vim3: the NBG for the VIM3 NPU, as the vim3 target writes it and the ksnn backend reads it.

    Paths are relative to the card. What the runtime reads: nb (else the one vim3/*.nb), library
    (else the one vim3/libnn_*.so), reorder, platform, input_layout, input, outputs, and sizes: one entry per
    compiled input size "HxW" for a fully convolutional net (PNet), each a Vim3Entry of its own.
    """

    backend: Optional[str] = None  # the compiler: acuitylite or khadas-sdk
    toolkit: Optional[str] = None
    toolkit_version: Optional[str] = None
    board: Optional[str] = None
    target: Optional[str] = None  # e.g. VIPNANOQI_PID0X88
    pid: Optional[str] = None
    nbg_format: Optional[str] = None  # the NBG header's format word, e.g. "0x0001000f" (Khadas' VIM3 NBGs: major 1)
    quantize: Optional[str] = None
    quantizer: Optional[str] = None
    nbg: Optional[str] = None
    meta: Optional[str] = None
    layout: Optional[str] = None
    channel_order: Optional[str] = None
    ksnn: Optional[KsnnCall] = None
    npu_input: Optional[NpuInput] = None
    # {file, how, mean, std, max_abs_vs_normalised_graph}: the card's normalisation folded into the NPU graph
    preprocess_in_graph: Optional[Dict[str, Any]] = None
    gates: Optional[Dict[str, Optional[float]]] = None  # {min_cosine, min_agreement} the quantized model passed
    quantize_auto: Optional[Dict[str, Any]] = None  # --quantize auto: {chosen, tried}
    input: Optional[NpuTensor] = None
    outputs: Optional[List[NpuTensor]] = None
    case: Optional[NpuCase] = None
    files: Optional[Dict[str, str]] = None  # relative path -> sha256
    npu_library: Optional[NpuLibrary] = None
    nb: Optional[str] = None
    library: Optional[str] = None
    reorder: Optional[str] = None
    platform: Optional[str] = None
    input_layout: Optional[str] = None
    sizes: Optional[Dict[str, "Vim3Entry"]] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="targets.vim3") -> "Vim3Entry":
        def sizes(value, at):
            if not isinstance(value, dict):
                raise CardError(f"{at}: expected an object of 'HxW' entries")
            return {key: cls.from_dict(entry, f"{at}.{key}") for key, entry in value.items()}

        return _from(cls, data, where, {"input": NpuTensor.from_dict, "outputs": _list_of(NpuTensor),
                                        "ksnn": KsnnCall.from_dict, "npu_input": NpuInput.from_dict,
                                        "case": NpuCase.from_dict, "npu_library": NpuLibrary.from_dict,
                                        "sizes": sizes})


@dataclass
class TfliteInput(_Part):
    """targets.tflite.input: the integer model's input tensor as the interpreter states it."""

    dtype: str
    scale: float
    zero_point: int
    shape: List[int] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="targets.tflite.input") -> "TfliteInput":
        return _from(cls, data, where)


@dataclass
class TfliteEntry(_Part):
    """targets.tflite: the integer TFLite model (NHWC) the tflite backend and Teflon run."""

    file: str = "model.tflite"
    layout: str = "nhwc"
    io_dtype: Optional[str] = None
    kernels: Optional[str] = None
    input: Optional[TfliteInput] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="targets.tflite") -> "TfliteEntry":
        return _from(cls, data, where, {"input": TfliteInput.from_dict})


_ONNX_TARGETS = ("onnx", "onnx_nchw", "onnx_open")


@dataclass
class Targets:
    """What the card's folder holds per target. A name this edgepad does not know stays in `others`."""

    onnx: Optional[OnnxEntry] = None
    onnx_nchw: Optional[OnnxEntry] = None
    onnx_open: Optional[OnnxEntry] = None
    caffe: Optional[CaffeEntry] = None
    vim3: Optional[Vim3Entry] = None
    tflite: Optional[TfliteEntry] = None
    others: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="targets") -> "Targets":
        if not isinstance(data, dict):
            raise CardError(f"{where}: expected an object, found {type(data).__name__}")
        known = {"caffe": CaffeEntry.from_dict, "vim3": Vim3Entry.from_dict, "tflite": TfliteEntry.from_dict,
                 **{name: OnnxEntry.from_dict for name in _ONNX_TARGETS}}
        targets = cls()
        for name, entry in data.items():
            if name in known:
                setattr(targets, name, known[name](entry, f"{where}.{name}"))
            else:
                targets.others[name] = entry
        return targets

    def to_dict(self) -> Dict[str, Any]:
        return {name: _plain(entry) for name, entry in self.items()}

    def names(self) -> List[str]:
        return [name for name, _entry in self.items()]

    def items(self):
        """(name, entry) for every target present, known ones first."""
        pairs = [(f.name, getattr(self, f.name)) for f in fields(self) if f.name != "others"]
        return [(n, e) for n, e in pairs if e is not None] + list(self.others.items())

    def __contains__(self, name: str) -> bool:
        return name in self.names()


@dataclass
class MtcnnInfo(_Part):
    """Detector nets only: which MTCNN net this is and how the NPU takes it."""

    net: str
    package: Optional[str] = None
    note: Optional[str] = None
    # PNet compiled for the NPU (`edgepad models detector --to vim3`): the camera frame sizes ("WxH") and minimum
    # face size its pyramid sizes ("HxW", one NBG each under targets.vim3.sizes) were computed for
    frame_sizes: Optional[List[str]] = None
    min_face_size: Optional[float] = None
    scale_factor: Optional[float] = None
    pyramid_sizes: Optional[List[str]] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, where="mtcnn") -> "MtcnnInfo":
        return _from(cls, data, where)


@dataclass
class ModelCard:
    input: InputSpec
    preprocess: Preprocess = field(default_factory=Preprocess)
    name: Optional[str] = None
    source: Optional[Source] = None
    outputs: List[OutputSpec] = field(default_factory=list)
    task: Optional[str] = None  # "classifier" or "embedding"
    head: Optional[str] = None  # a classifier's: softmax, sigmoid (one unit: P(second label)) or logits
    labels: Optional[List[str]] = None
    live_index: Optional[int] = None  # the class that means live (sigmoid head: 1 when the unit's label is live)
    threshold: Optional[float] = None  # spoof decision threshold
    match_threshold: Optional[float] = None  # embeddings: same person below this (unit-sphere Euclidean) distance
    targets: Targets = field(default_factory=Targets)
    mtcnn: Optional[MtcnnInfo] = None
    sha256: Optional[Dict[str, str]] = None  # file name -> sha256 of every file in the folder
    card_version: int = CARD_VERSION
    extra: Dict[str, Any] = field(default_factory=dict)

    DEFAULT_THRESHOLD = 0.5

    @classmethod
    def from_dict(cls, data: Any, where: str = CARD_FILE) -> "ModelCard":
        if not isinstance(data, dict):
            raise CardError(f"{where}: not a model card (a JSON object); convert the model again")
        data = dict(data)
        version = data.pop("card_version", data.pop(_LEGACY_VERSION_KEY, 1))
        if not isinstance(version, int) or version < 1:
            raise CardError(f"{where}: card_version {version!r} is not a version; convert the model again")
        if version > CARD_VERSION:
            raise CardError(f"{where}: model card version {version} is newer than this edgepad reads "
                            f"({CARD_VERSION}); update edgepad (and the board's runtime with `edgepad deploy`), "
                            "or convert the model again with this edgepad")
        try:
            card = _from(cls, data, where, {
                "input": InputSpec.from_dict, "preprocess": Preprocess.from_dict, "source": Source.from_dict,
                "outputs": _list_of(OutputSpec), "targets": Targets.from_dict, "mtcnn": MtcnnInfo.from_dict})
        except CardError as error:
            message = str(error)
            raise CardError(message if message.startswith(where) else f"{where}: {message}") from None
        card.card_version = CARD_VERSION
        return card

    def to_dict(self) -> Dict[str, Any]:
        data = _to(self)
        return {"card_version": data.pop("card_version"), **data}

    @classmethod
    def load(cls, path: "str | os.PathLike") -> "ModelCard":
        """The card of a convert output folder (or the edgepad.json itself)."""
        path = str(path)
        if os.path.isdir(path):
            path = os.path.join(path, CARD_FILE)
        if not os.path.isfile(path):
            raise CardError(f"{path}: no model card there; expected an `edgepad convert` output folder")
        try:
            with open(path) as f:
                data = json.load(f)
        except ValueError as error:
            raise CardError(f"{path}: not valid JSON ({error}); convert the model again") from None
        return cls.from_dict(data, path)

    def save(self, path: "str | os.PathLike") -> None:
        path = str(path)
        if os.path.isdir(path):
            path = os.path.join(path, CARD_FILE)
        with open(path, "w") as f:
            f.write(json.dumps(self.to_dict(), indent=2) + "\n")

    @property
    def spoof_threshold(self) -> float:
        return self.DEFAULT_THRESHOLD if self.threshold is None else float(self.threshold)

    @property
    def live_class(self) -> int:
        return 0 if self.live_index is None else int(self.live_index)

    @property
    def output_names(self) -> List[str]:
        return [o.name for o in self.outputs]

    def output_shape(self, name: str) -> Optional[List[Optional[int]]]:
        return next((o.shape for o in self.outputs if o.name == name), None)
