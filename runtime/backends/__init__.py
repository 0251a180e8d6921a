"""Inference backends, one small registry: name -> "module:class". Every backend runs a model folder
(an `edgepad convert` output with its edgepad.json card) on normalised NHWC float32 batches and returns
{output name: array with the batch first}, whatever layout or file format it feeds underneath.

    onnxruntime  model.open.onnx / model.onnx (default where onnxruntime is installed)
    opencv       cv2.dnn on the Caffe files, else the ONNX file
    ksnn         the VIM3 NPU through Khadas' KSNN (vim3/*.nb + libnn_*.so); see ksnn_backend.py
    tflite       the integer model.tflite, on the NPU through Mesa's Teflon delegate where present; see tflite_backend.py
"""
from __future__ import annotations

import importlib
import os

from .base import BackendError, InferenceModel, MissingTargetError, read_card

BACKENDS = {
    "onnxruntime": ".ort_backend:OnnxRuntimeModel",
    "opencv": ".opencv_backend:OpenCVModel",
    "ksnn": ".ksnn_backend:KsnnModel",
    "tflite": ".tflite_backend:TfliteModel",
}

__all__ = ["BACKENDS", "BackendError", "InferenceModel", "MissingTargetError", "available_backends", "default_backend", "load_model",
           "read_card"]


def backend_class(name: str):
    if name not in BACKENDS:
        raise BackendError(f"--backend {name}: unknown backend; choose from {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name, __name__), class_name)


def available_backends() -> list:
    """Backends whose library imports here (KSNN only on the board)."""
    found = []
    for name in BACKENDS:
        try:
            if backend_class(name).available():
                found.append(name)
        except ImportError:
            continue
    return found


def default_backend() -> str:
    """onnxruntime where installed, else OpenCV's DNN module (always there: the runtime needs cv2)."""
    return "onnxruntime" if backend_class("onnxruntime").available() else "opencv"


def load_model(model_dir: str | os.PathLike, backend: str | None = None, **options) -> InferenceModel:
    """The model in `model_dir` ready to run on `backend` (default: default_backend())."""
    return backend_class(backend or default_backend())(str(model_dir), **options)
