"""Inference backends, one small registry: name -> "module:class". Every backend runs a model folder
(an `edgepad convert` output with its edgepad.json card) on normalised NHWC float32 batches and returns
{output name: array with the batch first}, whatever layout or file format it feeds underneath.

    onnxruntime  model.open.onnx / model.onnx (the CPU backend where onnxruntime is installed)
    opencv       cv2.dnn on the Caffe files, else the ONNX file (the CPU backend otherwise)
    ksnn         the VIM3 NPU through Khadas' KSNN (vim3/*.nb + libnn_*.so); see ksnn_backend.py
    tflite       the integer model.tflite, on the NPU through Mesa's Teflon delegate where present (tflite_backend.py)

Without a chosen backend each model runs on the NPU when its folder has NPU files (its card has a vim3 target),
through KSNN on the board or edgepad's npu_loader where KSNN is missing; else on the CPU backend.
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

NPU_BACKEND = "ksnn"

__all__ = ["BACKENDS", "NPU_BACKEND", "BackendError", "InferenceModel", "MissingTargetError", "available_backends",
           "cpu_backend", "default_backend", "has_npu_files", "load_model", "read_card"]


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


def cpu_backend() -> str:
    """onnxruntime where installed, else OpenCV's DNN module (always there: the runtime needs cv2)."""
    return "onnxruntime" if backend_class("onnxruntime").available() else "opencv"


def has_npu_files(model_dir: str | os.PathLike) -> bool:
    """The model's card lists NPU files (a vim3 target: one NBG and its library, or one per PNet input size)."""
    return "vim3" in read_card(model_dir).get("targets", {})


def default_backend(model_dir: str | os.PathLike | None = None) -> str:
    """The NPU for a model with NPU files, else the CPU backend (also without a model)."""
    if model_dir is not None and has_npu_files(model_dir):
        return NPU_BACKEND
    return cpu_backend()


def load_model(model_dir: str | os.PathLike, backend: str | None = None, **options) -> InferenceModel:
    """The model in `model_dir` ready to run on `backend` (default: default_backend(model_dir))."""
    return backend_class(backend or default_backend(model_dir))(str(model_dir), **options)
