"""Load a Keras .h5 file with the Keras that wrote it: Keras 2 files through tf_keras, Keras 3 files through keras.

Keras 3 cannot deserialize some Keras 2 configs (DepthwiseConv2D raises a TypeError), so the file's own
`keras_version` root attribute decides, not whichever Keras happens to be imported.
"""
from __future__ import annotations

import difflib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py

from edgepad.errors import InputFileError, ModelLoadError, OutputLayerError, UnknownLayerError, UsageError


@dataclass(frozen=True)
class KerasFileInfo:
    path: Path
    keras_version: str
    backend: str  # "tf_keras" for Keras 2 files, "keras" for Keras 3 files
    layers: tuple[tuple[str, str], ...]  # (layer name, class name) from the stored config


def inspect_h5(path: str | os.PathLike) -> KerasFileInfo:
    """Read what the file says it is, without building the model."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder, expected a Keras .h5 file")
    if not h5py.is_hdf5(path):
        raise InputFileError(f"{path}: not an HDF5 file; edgepad convert takes a Keras model saved as .h5")
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            has_weights = "model_weights" in f
    except OSError as error:
        raise InputFileError(
            f"{path}: the HDF5 file is damaged or truncated ({_first_line(error)}); save the model again"
        ) from error
    config_text = _text(attrs.get("model_config"))
    if not config_text:
        what = "only weights" if has_weights or attrs.get("layer_names") is not None else "no Keras model"
        raise InputFileError(
            f"{path}: the HDF5 file holds {what} (no 'model_config'); save it with model.save('{path.name}'), "
            "not save_weights()"
        )
    keras_version = _text(attrs.get("keras_version")) or "2"
    config = json.loads(config_text)
    return KerasFileInfo(
        path=path,
        keras_version=keras_version,
        backend="keras" if keras_version.startswith("3") else "tf_keras",
        layers=tuple(_walk_layers(config)),
    )


def prefer_legacy_keras_for(info: KerasFileInfo) -> None:
    """Before TensorFlow is imported, make `tensorflow.keras` the Keras that wrote the file.

    A --custom-objects file written for TF 2.x says `from tensorflow import keras`; for a Keras 2 file that
    must be tf_keras. Once TensorFlow is imported the choice is fixed, so this only helps a fresh process.
    """
    if info.backend == "tf_keras" and "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def load_custom_objects(path: str | os.PathLike | None) -> dict[str, Any]:
    """Everything public a user's Python file defines (layers, losses, functions), by name."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"--custom-objects {path}: no such file")
    spec = importlib.util.spec_from_file_location(f"edgepad_custom_objects_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise InputFileError(f"--custom-objects {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the user's code: any failure is theirs to fix, reported in one line
        raise InputFileError(
            f"--custom-objects {path}: importing it failed: {type(error).__name__}: {_first_line(error)}"
        ) from error
    return {
        name: value
        for name, value in vars(module).items()
        if not name.startswith("_") and callable(value) and not isinstance(value, type(sys))
    }


def load_keras_model(info: KerasFileInfo, custom_objects: dict[str, Any]):
    """Build the model with the Keras that wrote the file; unknown layer classes are named with the fix."""
    unknown = _unknown_layers(info, custom_objects)
    if unknown:
        layer, class_name = unknown[0]
        others = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise UnknownLayerError(
            f"{info.path}: layer '{layer}' ({class_name}) is not a Keras built-in{others}: pass "
            f"--custom-objects FILE.py that defines {class_name}, or --output-layer NAME to export the model "
            "up to a layer before it"
        )
    keras_module = _keras_module(info.backend)
    try:
        return keras_module.models.load_model(str(info.path), custom_objects=custom_objects, compile=False)
    except Exception as error:  # Keras raises TypeError/ValueError/KeyError for bad configs alike
        raise ModelLoadError(
            f"{info.path}: {info.backend} (Keras {info.keras_version} file) could not rebuild the model: "
            f"{type(error).__name__}: {_first_line(error)}"
        ) from error


def cut_at_layer(model, info: KerasFileInfo, output_layer: str | None):
    """The sub-model that ends at `output_layer` (a name, or an index such as -2 like the seed)."""
    if output_layer is None:
        return model
    names = [layer.name for layer in model.layers]
    try:
        index = int(output_layer)
    except ValueError:
        if output_layer not in names:
            near = difflib.get_close_matches(output_layer, names, n=3, cutoff=0.4) or names[-3:]
            raise OutputLayerError(
                f"{info.path}: --output-layer '{output_layer}' is not a layer of the model; nearest names: "
                + ", ".join(near)
            ) from None
        layer = model.get_layer(output_layer)
    else:
        if not -len(names) <= index < len(names):
            raise OutputLayerError(
                f"{info.path}: --output-layer {index} is out of range: the model has {len(names)} layers "
                f"(0..{len(names) - 1}, or -1..-{len(names)})"
            )
        layer = model.layers[index]
    keras_module = _keras_module(info.backend)
    return keras_module.models.Model(model.inputs[0], layer.output, name=f"{model.name}_to_{layer.name}")


def output_names(model) -> list[str]:
    """The Keras names of the model's outputs (the layer that produced each)."""
    names = getattr(model, "output_names", None)
    if names:
        return list(names)
    return [t._keras_history[0].name for t in model.outputs]


def _keras_module(backend: str):
    if backend == "tf_keras":
        import tf_keras

        return tf_keras
    import keras

    return keras


def _unknown_layers(info: KerasFileInfo, custom_objects: dict[str, Any]) -> list[tuple[str, str]]:
    keras_module = _keras_module(info.backend)
    known = set(dir(keras_module.layers)) | set(custom_objects)
    return [(name, cls) for name, cls in info.layers if cls not in known and cls not in _CONTAINER_CLASSES]


_CONTAINER_CLASSES = {"Functional", "Model", "Sequential", "InputLayer"}


def _walk_layers(config: dict):
    """(name, class_name) for every layer in a model config, nested models included."""
    inner = config.get("config", {})
    layers = inner.get("layers", []) if isinstance(inner, dict) else []
    for layer in layers:
        class_name = layer.get("class_name", "")
        name = layer.get("config", {}).get("name") or layer.get("name", "")
        yield name, class_name
        if class_name in _CONTAINER_CLASSES:
            yield from _walk_layers(layer)


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def parse_input_shape(text: str | None) -> tuple[int, int, int] | None:
    """'112,112,3' -> (112, 112, 3), for --input-shape H,W,C."""
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0:
        raise UsageError(f"--input-shape '{text}': expected H,W,C as three positive integers, e.g. 112,112,3")
    return values
