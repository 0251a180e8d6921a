"""OpenCV's DNN module: the Caffe files when the folder has them (what the board's OpenCV was built for), else ONNX."""
from __future__ import annotations

from typing import Dict, Optional

import cv2
import numpy as np

from ..card import ModelCard
from .base import BackendError, InferenceModel, nhwc_to


class OpenCVModel(InferenceModel):
    name = "opencv"

    def __init__(self, model_dir: str, card: Optional[ModelCard] = None, prefer: str = "caffe"):
        super().__init__(model_dir, card)
        targets = self.card.targets
        order = ["caffe", "onnx_open", "onnx"] if prefer == "caffe" else ["onnx_open", "onnx", "caffe"]
        key = next((k for k in order if getattr(targets, k) is not None), None)
        if key is None:
            raise BackendError(f"{model_dir}: the model card has neither Caffe nor ONNX files for OpenCV")
        self.entry = getattr(targets, key)
        self.source = key
        try:
            if key == "caffe":
                self.net = cv2.dnn.readNetFromCaffe(self._path(self.entry.prototxt), self._path(self.entry.caffemodel))
                self.layout = "nchw"
            else:
                self.net = cv2.dnn.readNetFromONNX(self._path(self.entry.file))
                self.layout = self.entry.layout
        except cv2.error as error:
            reason = str(error).strip().splitlines()[-1]
            raise BackendError(f"{model_dir}: OpenCV cannot read its {key} files ({reason})") from None
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net_outputs = list(self.net.getUnconnectedOutLayersNames())
        self.batch_open = key != "onnx"  # Caffe and the open ONNX reshape to any batch on setInput
        if not self.output_names:
            self.output_names = list(self.net_outputs)
        # Ask for the card's outputs by name where the net knows them, else take its outputs in order.
        # Caffe nets list Silence layers (pooling crops) among their unconnected outputs: fetch the card's blobs.
        caffe_blobs = self.entry.outputs if key == "caffe" else None
        by_name = all(n in self.net_outputs for n in self.output_names)
        if caffe_blobs and len(caffe_blobs) == len(self.output_names):
            self.fetch = list(caffe_blobs)
        else:
            self.fetch = list(self.output_names) if by_name else self.net_outputs[:len(self.output_names)]
        self.channels = [o.shape[-1] if o.shape else None for o in self.card.outputs]

    def _run_batch(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        self.net.setInput(nhwc_to(batch, self.layout))
        values = self.net.forward(self.fetch)
        result = {}
        for index, (name, value) in enumerate(zip(self.output_names, values)):
            channels = self.channels[index] if index < len(self.channels) else None
            if value.ndim == 4 and channels is not None and value.shape[-1] != channels and value.shape[1] == channels:
                value = value.transpose(0, 2, 3, 1)  # a Caffe net that ends in NCHW; the card's shapes are NHWC
            result[name] = np.ascontiguousarray(value)
        return result
