"""Models for the NPU tests whose outputs really depend on the input, so a quantization error shows in them.

A randomly initialised MobileNetV2 gives the same scores for every face: its activations collapse layer after
layer, and any quantization "passes" on it. Here every BatchNormalization takes the statistics of the face images
(as training would leave them), so each layer's activations keep a unit spread, and the head is fitted to the
faces: its two logits are the two main directions in which the pooled features vary, scaled to a few units, so
the scores move from face to face as a trained PAD head's do.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def face_inputs(folder: Path, size: int) -> np.ndarray:
    """The folder's images as the default model card normalises them: RGB, (x - 127.5) / 127.5, NHWC."""
    images = []
    for path in sorted(folder.glob("*.png")):
        image = cv2.resize(cv2.imread(str(path), cv2.IMREAD_COLOR), (size, size))
        images.append((cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) - 127.5) / 127.5)
    return np.stack(images)


def mobilenet_v2_face_head(faces: Path, size: int = 112, alpha: float = 0.35, logit_scale: float = 3.0,
                           seed: int = 0):
    """MobileNetV2 (ReLU6, residual Add, asymmetric padding) + a 2-class softmax head fitted to the faces' features."""
    import keras

    keras.utils.set_random_seed(seed)  # the same network every run, so its quantization figures repeat
    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, include_top=False, weights=None,
                                          pooling="avg")
    inputs = face_inputs(faces, size)
    batchnorms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in batchnorms:
        layer.momentum = 0.0  # one pass in training mode stores the faces' batch statistics as moving statistics
    base(inputs, training=True)
    for layer in batchnorms:
        layer.momentum = 0.99
    features = np.asarray(base.predict(inputs, verbose=0), np.float64)
    centered = features - features.mean(axis=0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    directions = vt[:2].T  # (features, 2)
    spread = (centered @ directions).std(axis=0)
    kernel = directions / spread * logit_scale
    bias = -features.mean(axis=0) @ kernel
    head = keras.layers.Dense(2, activation="softmax", name="pad_prob")
    model = keras.Model(base.input, head(base.output), name="mobilenetv2_face")
    head.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return model
