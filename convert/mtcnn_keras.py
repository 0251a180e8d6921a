"""MTCNN's PNet, RNet and ONet as Keras 3 functional models, with the weights the `mtcnn` 1.0.0 package ships.

The package stores its weights as LZ4-compressed joblib pickles (`mtcnn/assets/weights/{pnet,rnet,onet}.lz4`):
lists of float32 arrays in the order of its subclassed models' `set_weights`, i.e. layer by layer as below.
The original Caffe nets saw images with height and width swapped; the package compensates by storing every
conv kernel with its spatial axes swapped and by a `Permute((2, 1, 3))` before flattening, so these weights
reproduce the original nets only with exactly this layer order. Host-only (needs Keras).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

NET_NAMES = ("pnet", "rnet", "onet")
INPUT_SIZES = {"pnet": None, "rnet": 24, "onet": 48}  # PNet is fully convolutional
# Output names the runtime reads (same for every net, so one post-processing serves all backends).
OUTPUTS = {
    "pnet": ("bbox_reg", "face_prob"),
    "rnet": ("bbox_reg", "face_prob"),
    "onet": ("bbox_reg", "landmarks", "face_prob"),
}


def mtcnn_package_version() -> str:
    from importlib.metadata import version

    return version("mtcnn")


def package_weights(net: str) -> list[np.ndarray]:
    """The `mtcnn` package's weights for one net, in its layer order."""
    import importlib.resources

    import joblib

    path = importlib.resources.files("mtcnn.assets.weights") / f"{net}.lz4"
    return [np.asarray(w, dtype=np.float32) for w in joblib.load(str(path))]


def save_quietly(model, path) -> None:
    """model.save(path) without Keras' absl warning, on every .h5 save, that the format is legacy: the detector's
    nets go through edgepad convert's .h5 path on purpose, and the warning would fill the user's terminal."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        model.save(path)
    finally:
        logger.setLevel(level)


def build_net(net: str, input_size: int | tuple[int, int] | None = None, name: str | None = None):
    """One MTCNN net as a functional Keras 3 model with the package's weights.

    `input_size` fixes PNet's input: H = W = input_size, or (H, W) for one pyramid size; None leaves it open.
    RNet and ONet have fixed sizes. `name`: the model's name (default the net's), which names the NPU case.
    """
    if net not in NET_NAMES:
        raise ValueError(f"unknown MTCNN net {net!r}; choose from {', '.join(NET_NAMES)}")
    from edgepad.quiet_tensorflow import import_tensorflow

    import_tensorflow()  # before Keras imports it: TensorFlow's start-up chatter stays off the user's terminal
    builder = {"pnet": _pnet, "rnet": _rnet, "onet": _onet}[net]
    size = INPUT_SIZES[net] or input_size
    hw = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    model, ordered_layers = builder(hw, name or net)
    _set_weights_in_order(model, ordered_layers, package_weights(net))
    return model


def save_h5(net: str, path: str | os.PathLike, input_size: int | tuple[int, int] | None = None) -> Path:
    path = Path(path)
    save_quietly(build_net(net, input_size), path)
    return path


def _conv_prelu(layers, x, filters, kernel, name, ordered, pool=None):
    conv = layers.Conv2D(filters, kernel, padding="valid", name=f"conv{name}")
    prelu = layers.PReLU(shared_axes=[1, 2], name=f"prelu{name}")
    ordered += [conv, prelu]
    x = prelu(conv(x))
    if pool is not None:
        size, padding = pool
        x = layers.MaxPooling2D(size, strides=2, padding=padding, name=f"pool{name}")(x)
    return x


def _pnet(size, name):
    import keras
    from keras import layers

    ordered: list = []
    inputs = keras.Input((*size, 3), name="input")
    x = _conv_prelu(layers, inputs, 10, 3, "1", ordered, pool=(2, "same"))
    x = _conv_prelu(layers, x, 16, 3, "2", ordered)
    x = _conv_prelu(layers, x, 32, 3, "3", ordered)
    box = layers.Conv2D(4, 1, name="bbox_reg")
    prob = layers.Conv2D(2, 1, activation="softmax", name="face_prob")
    ordered += [box, prob]
    return keras.Model(inputs, [box(x), prob(x)], name=name), ordered


def _dense_head(layers, x, units, name, ordered):
    dense = layers.Dense(units, name=f"fc{name}")
    prelu = layers.PReLU(name=f"prelu{name}")
    ordered += [dense, prelu]
    return prelu(dense(x))


def _rnet(size, name):
    import keras
    from keras import layers

    ordered: list = []
    inputs = keras.Input((*size, 3), name="input")
    x = _conv_prelu(layers, inputs, 28, 3, "1", ordered, pool=(3, "same"))
    x = _conv_prelu(layers, x, 48, 3, "2", ordered, pool=(3, "valid"))
    x = _conv_prelu(layers, x, 64, 2, "3", ordered)
    x = layers.Flatten(name="flatten")(layers.Permute((2, 1, 3), name="permute")(x))
    x = _dense_head(layers, x, 128, "4", ordered)
    box = layers.Dense(4, name="bbox_reg")
    prob = layers.Dense(2, activation="softmax", name="face_prob")
    ordered += [box, prob]
    return keras.Model(inputs, [box(x), prob(x)], name=name), ordered


def _onet(size, name):
    import keras
    from keras import layers

    ordered: list = []
    inputs = keras.Input((*size, 3), name="input")
    x = _conv_prelu(layers, inputs, 32, 3, "1", ordered, pool=(3, "same"))
    x = _conv_prelu(layers, x, 64, 3, "2", ordered, pool=(3, "valid"))
    x = _conv_prelu(layers, x, 64, 3, "3", ordered, pool=(2, "same"))
    x = _conv_prelu(layers, x, 128, 2, "4", ordered)
    x = layers.Flatten(name="flatten")(layers.Permute((2, 1, 3), name="permute")(x))
    x = _dense_head(layers, x, 256, "5", ordered)
    box = layers.Dense(4, name="bbox_reg")
    landmarks = layers.Dense(10, name="landmarks")
    prob = layers.Dense(2, activation="softmax", name="face_prob")
    ordered += [box, landmarks, prob]
    return keras.Model(inputs, [box(x), landmarks(x), prob(x)], name=name), ordered


def _set_weights_in_order(model, ordered_layers, weights: list[np.ndarray]) -> None:
    """The package's flat list, consumed layer by layer in its own order (shapes checked as we go)."""
    position = 0
    for layer in ordered_layers:
        count = len(layer.get_weights())
        chunk = weights[position:position + count]
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [tuple(w.shape) for w in chunk] != expected:
            raise ValueError(f"{model.name}: layer {layer.name} expects weights {expected}, the package has "
                             f"{[tuple(w.shape) for w in chunk]}")
        layer.set_weights(chunk)
        position += count
    if position != len(weights):
        raise ValueError(f"{model.name}: {len(weights) - position} package weight arrays left unused")
