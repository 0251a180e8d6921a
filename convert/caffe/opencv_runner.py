"""Run a written Caffe model with OpenCV 4's own importer (cv2.dnn.readNetFromCaffe): the independent reader the
Caffe target is checked against."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edgepad.errors import ExportError


def load_caffe_net(prototxt: Path, caffemodel: Path):
    import cv2

    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromCaffe"):
        raise ExportError(f"OpenCV {cv2.__version__} has no cv2.dnn.readNetFromCaffe; install opencv-python-headless<5")
    try:
        net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    except cv2.error as error:
        raise ExportError(f"OpenCV could not read {prototxt.name}: {str(error).strip().splitlines()[-1]}") from error
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net


def run_caffe(prototxt: Path, caffemodel: Path, inputs: Sequence[np.ndarray], input_blob: str,
              outputs: Mapping[str, str]) -> dict[str, list[np.ndarray]]:
    """{ONNX output name: [OpenCV's output for each input]}; `outputs` maps ONNX output names to Caffe blobs."""
    import cv2

    net = load_caffe_net(prototxt, caffemodel)
    results: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
    blobs = list(outputs.values())
    for x in inputs:
        net.setInput(np.ascontiguousarray(x, np.float32), input_blob)
        try:
            values = net.forward(blobs)
        except cv2.error as error:
            raise ExportError(f"OpenCV could not run {prototxt.name}: {str(error).strip().splitlines()[-1]}") from error
        for name, value in zip(outputs, values, strict=True):
            results[name].append(np.array(value))
    return results
