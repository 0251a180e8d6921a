"""What `edgepad convert` accepts, told from the path: a Keras .h5, a Keras 3 .keras file, a SavedModel folder, an ONNX.

Each kind gives the pipeline the same things: a model name, the (H, W, C) input, the reference outputs on the
parity inputs, and the ONNX graph(s). Keras kinds load into a Keras model, which the pipeline exports with tf2onnx
and whose outputs are the reference. An ONNX enters after that step: the original graph, run by onnxruntime, is
the reference every target (the simplified model.onnx, caffe, vim3) is checked against.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepad.errors import InputFileError, ModelLoadError, ShapeError, UsageError

from .onnx.keras_loading import KerasFileInfo, inspect_h5, prefer_legacy_keras_for
from .onnx.keras_to_onnx import OnnxExport, check, simplify_if_equal

ONNX_SUFFIXES = {".onnx"}
KERAS3_SUFFIXES = {".keras"}
SAVED_MODEL_FILE = "saved_model.pb"
CHANNEL_COUNTS = (1, 3, 4)  # what an image's channel dimension can be: grey, colour, colour with alpha
KERAS_ONLY_TARGETS = {"tflite"}  # converted from the Keras model itself


@dataclass(frozen=True)
class ModelSource:
    """The file or folder given to `edgepad convert`, and how it is read."""

    path: Path
    kind: str  # "keras_h5", "keras", "saved_model", "onnx"
    keras_version: str | None
    backend: str  # the loader: tf_keras, keras, tf.saved_model (through Keras 3's TFSMLayer), onnxruntime
    h5: KerasFileInfo | None = None

    @property
    def is_keras(self) -> bool:
        return self.kind != "onnx"

    @property
    def hashed_file(self) -> Path:
        """The file whose digest identifies the source (a SavedModel folder: its graph)."""
        return self.path / SAVED_MODEL_FILE if self.kind == "saved_model" else self.path

    def describe(self) -> str:
        what = {"keras_h5": f"Keras {self.keras_version} file", "keras": f"Keras {self.keras_version} file",
                "saved_model": "SavedModel", "onnx": "ONNX"}[self.kind]
        return f"{self.path.name} ({what}, via {self.backend})"


def detect_source(path: str | Path) -> ModelSource:
    """The kind of model at `path`, from what it is (not only its name); unreadable input is one line with the fix."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.is_dir():
        if not (path / SAVED_MODEL_FILE).is_file():
            raise InputFileError(f"{path}: a folder without {SAVED_MODEL_FILE}; give a SavedModel folder, or a .h5, "
                                 ".keras or .onnx file")
        return ModelSource(path, "saved_model", None, "tf.saved_model")
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return ModelSource(path, "onnx", None, "onnxruntime")
    if suffix in KERAS3_SUFFIXES:
        return ModelSource(path, "keras", _keras_zip_version(path), "keras")
    info = inspect_h5(path)
    return ModelSource(path, "keras_h5", info.keras_version, info.backend, h5=info)


def prepare_process(source: ModelSource, targets) -> None:
    """Before TensorFlow is imported: the Keras that wrote an .h5; and what an ONNX input cannot be converted to."""
    if source.h5 is not None:
        prefer_legacy_keras_for(source.h5)
    refused = sorted(KERAS_ONLY_TARGETS & set(targets))
    if not source.is_keras and refused:
        raise UsageError(f"--to {','.join(refused)}: converted from a Keras model, and {source.path.name} is an ONNX "
                         "file; give the Keras model, or leave those targets out (onnx, caffe and vim3 take ONNX)")


def load_keras(source: ModelSource, custom_objects: dict):
    """The Keras model of a Keras source (a SavedModel is wrapped as a Keras 3 model around its serving function)."""
    from .onnx.keras_loading import load_keras_model

    if source.kind == "keras_h5":
        return load_keras_model(source.h5, custom_objects)
    import keras

    try:
        if source.kind == "keras":
            return keras.models.load_model(str(source.path), custom_objects=custom_objects, compile=False)
        return _saved_model_as_keras(source.path)
    except ShapeError:
        raise
    except Exception as error:  # Keras and TensorFlow raise many kinds for a bad file; all mean "cannot load"
        raise ModelLoadError(f"{source.path}: {source.backend} could not load the model: "
                             f"{type(error).__name__}: {_first_line(error)}") from error


def _saved_model_as_keras(path: Path):
    import keras
    import tensorflow as tf

    signatures = tf.saved_model.load(str(path)).signatures
    if "serving_default" not in signatures:
        raise ShapeError(f"{path}: the SavedModel has no 'serving_default' signature (it has "
                         f"{', '.join(signatures) or 'none'}); save it with a serving signature")
    specs = list(signatures["serving_default"].structured_input_signature[1].values())
    if len(specs) != 1 or len(specs[0].shape) != 4:
        raise ShapeError(f"{path}: the serving signature takes {[list(s.shape) for s in specs]}; edgepad converts "
                         "models with one image input (batch, H, W, C)")
    inputs = keras.Input(tuple(specs[0].shape)[1:], name="input")
    outputs = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default", name=path.name)(inputs)
    if isinstance(outputs, dict):
        outputs = [outputs[k] for k in sorted(outputs)]
    return keras.Model(inputs, outputs, name=path.name)


def _keras_zip_version(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            metadata = json.loads(archive.read("metadata.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        raise InputFileError(f"{path}: not a Keras 3 .keras file ({_first_line(error)}); save it again with "
                             "model.save('model.keras')") from error
    return str(metadata.get("keras_version", "3"))


# ---------------------------------------------------------------------------------------------------------- ONNX


@dataclass
class OnnxSource:
    """An ONNX file made static, checked, and laid out for the targets."""

    name: str
    hwc: tuple[int, int, int]
    layout: str  # the graph's own input layout
    layout_from: str  # "graph" (read from the input's shape) or "--layout"
    original: bytes  # the file as given: onnxruntime on it is the reference
    exports: dict = field(default_factory=dict)  # layout -> OnnxExport (model.onnx in the graph's layout, + nchw)

    def reference(self, inputs_hwc: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
        from edgepad.runtime.preprocess import batches

        from .onnx.onnx_runner import run_onnx

        return run_onnx(self.original, batches(inputs_hwc, self.layout))


def guess_layout(dims: list) -> str | None:
    """'nchw' or 'nhwc' from a 4-d image input's dims (ints, or None when open), or None when it cannot be told.

    A channel dimension is 1, 3 or 4; it is where such a value stands and the other candidate position does not
    (an open dimension is spatial: channel counts are fixed in every exporter's graphs)."""
    second, last = dims[1], dims[3]
    second_is_channel = second in CHANNEL_COUNTS
    last_is_channel = last in CHANNEL_COUNTS
    if second_is_channel and not last_is_channel:
        return "nchw"
    if last_is_channel and not second_is_channel:
        return "nhwc"
    return None


def prepare_onnx(path: Path, input_shape: tuple[int, int, int] | None, layout: str | None,
                 want_nchw: bool) -> OnnxSource:
    """Check the file, fix open dimensions from --input-shape, tell its layout, simplify (kept only if equal)."""
    import onnx

    try:
        proto = onnx.load(str(path))
    except Exception as error:  # protobuf's DecodeError and friends: the file is not an ONNX model
        raise InputFileError(f"{path}: not a readable ONNX model ({type(error).__name__}: {_first_line(error)}); "
                             "export it again (torch.onnx.export, tf2onnx)") from error
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as error:  # onnx raises ValidationError and InferenceError alike
        raise InputFileError(f"{path}: the ONNX checker rejects it: {_first_line(error)}") from error
    initializers = {i.name for i in proto.graph.initializer}
    graph_inputs = [i for i in proto.graph.input if i.name not in initializers]
    if len(graph_inputs) != 1 or len(proto.graph.output) < 1:
        raise ShapeError(f"{path}: the graph has {len(graph_inputs)} inputs; edgepad converts single-input models")
    graph_input = graph_inputs[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in graph_input.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ShapeError(f"{path}: input '{graph_input.name}' has shape {_shape_text(dims)}; edgepad converts image "
                         "models with a 4-d input (N, C, H, W) or (N, H, W, C)")
    told = guess_layout(dims)
    if layout is not None and told is not None and layout != told:
        raise UsageError(f"--layout {layout}: {path.name}'s input {_shape_text(dims)} is {told.upper()}; "
                         f"leave --layout out or give {told}")
    if told is None and layout is None:
        raise UsageError(f"{path}: cannot tell whether input {_shape_text(dims)} is NCHW or NHWC; "
                         "pass --layout nchw or --layout nhwc")
    graph_layout = told or layout
    static = _static_dims(path, dims, graph_layout, input_shape)
    hwc = (static[2], static[3], static[1]) if graph_layout == "nchw" else tuple(static[1:])

    original = proto.SerializeToString()
    fixed = _with_input_dims(proto, graph_input.name, static)
    check(fixed)
    exports = {graph_layout: _export(fixed, graph_input.name, static)}
    if want_nchw and graph_layout != "nchw":
        nchw = _nchw_front(fixed, graph_input.name, static)
        check(nchw)
        exports["nchw"] = _export(nchw, graph_input.name, [static[0], static[3], static[1], static[2]])
    return OnnxSource(name=path.stem, hwc=hwc, layout=graph_layout, layout_from="graph" if told else "--layout",
                      original=original, exports=exports)


def _export(proto, input_name: str, shape: list[int]) -> OnnxExport:
    """The graph as the targets take it: onnx-simplifier's version only where its outputs equal this graph's."""
    export = OnnxExport(proto, input_name, list(shape), [o.name for o in proto.graph.output], simplified=False)
    simplify_if_equal(export)
    return export


def _static_dims(path: Path, dims: list, layout: str, input_shape) -> list[int]:
    """The input's dims with batch 1 and --input-shape (H,W,C) where the graph leaves them open."""
    if input_shape is not None:
        h, w, c = input_shape
        wanted = [1, c, h, w] if layout == "nchw" else [1, h, w, c]
        clash = [(have, want) for have, want in zip(dims[1:], wanted[1:], strict=True)
                 if have is not None and have != want]
        if clash:
            raise ShapeError(f"{path}: --input-shape {h},{w},{c} does not fit the input {_shape_text(dims)} "
                             f"({layout.upper()})")
        return wanted
    if any(d is None for d in dims[1:]):
        example = "3,112,112" if layout == "nchw" else "112,112,3"
        raise ShapeError(f"{path}: the input {_shape_text(dims)} has open dimensions; pass --input-shape H,W,C "
                         f"(the NPU needs static shapes), e.g. --input-shape 112,112,3 for a {example} input")
    return [1, *dims[1:]]


def _with_input_dims(proto, input_name: str, dims: list[int]):
    """A copy with the input's dims fixed and shapes inferred again (stale value_info dropped)."""
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(proto)
    for value in fixed.graph.input:
        if value.name == input_name:
            for dim, size in zip(value.type.tensor_type.shape.dim, dims, strict=True):
                dim.Clear()
                dim.dim_value = size
    for output in fixed.graph.output:  # open output dims (a dynamic batch) are inferred again
        for dim in output.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.Clear()
    del fixed.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(fixed)


def _nchw_front(proto, input_name: str, nhwc_dims: list[int]):
    """The NHWC graph behind a Transpose from an NCHW input of the same name (simplification folds it into the
    graph's own NHWC->NCHW transpose when it has one)."""
    import onnx
    from onnx import helper

    nchw = onnx.ModelProto()
    nchw.CopyFrom(proto)
    inner = f"{input_name}_nhwc"
    for node in nchw.graph.node:
        node.input[:] = [inner if n == input_name else n for n in node.input]
    n, h, w, c = nhwc_dims
    for value in nchw.graph.input:
        if value.name == input_name:
            for dim, size in zip(value.type.tensor_type.shape.dim, (n, c, h, w), strict=True):
                dim.dim_value = size
    nchw.graph.node.insert(0, helper.make_node("Transpose", [input_name], [inner], perm=[0, 2, 3, 1],
                                               name=f"{input_name}_to_nhwc"))
    del nchw.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(nchw)


def _shape_text(dims) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
