"""Small Keras 3 models built inside the tests, each exercising what real PAD backbones contain."""
from __future__ import annotations

import numpy as np


def settle_batchnorm(model, shape, seed=0):
    """Give BatchNorm non-trivial moving statistics so outputs depend on them (a fresh BN is the identity)."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                rng.uniform(-0.2, 0.2, beta.shape).astype(np.float32),
                rng.uniform(-0.2, 0.2, mean.shape).astype(np.float32),
                rng.uniform(0.5, 2.0, var.shape).astype(np.float32),
            ])
    return model


def mobilenet(size=96):
    import keras

    base = keras.applications.MobileNet(input_shape=(size, size, 3), alpha=0.25, include_top=False, weights=None)
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    out = keras.layers.Dense(2, activation="softmax", name="pad_prob")(x)
    return settle_batchnorm(keras.Model(base.input, out, name="mobilenet_pad"), (size, size, 3))


def mobilenet_v2(size=96):
    """ReLU6, residual Add, and ZeroPadding2D(((0, 1), (0, 1))) before stride-2 depthwise convs."""
    import keras

    model = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35, weights=None, classes=2)
    return settle_batchnorm(model, (size, size, 3))


def prelu_depthwise_embedding(size=64):
    """MobileFaceNet style: Conv-BN-PReLU, depthwise blocks, a global depthwise conv, a linear embedding."""
    import keras
    from keras import layers

    inputs = keras.Input((size, size, 3), name="face")
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.PReLU(shared_axes=[1, 2])(x)
    for filters, stride in ((16, 1), (32, 2), (32, 1)):
        y = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        y = layers.BatchNormalization()(y)
        y = layers.PReLU(shared_axes=[1, 2])(y)
        y = layers.Conv2D(filters, 1, use_bias=False)(y)
        y = layers.BatchNormalization()(y)
        x = layers.Add()([x, y]) if stride == 1 and x.shape[-1] == filters else y
    x = layers.DepthwiseConv2D(int(x.shape[1]), padding="valid", use_bias=False, name="global_depthwise")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(32, name="embedding")(x)
    return settle_batchnorm(keras.Model(inputs, x, name="mobilefacenet_like"), (size, size, 3))


def sequential_small(size=32):
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input((size, size, 3)),
        layers.Conv2D(8, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(16, 3, strides=2, activation="relu"),
        layers.Flatten(),
        layers.Dense(2, activation="softmax"),
    ], name="sequential_small")


def fully_convolutional():
    """Open H and W, as MTCNN's PNet: needs --input-shape."""
    import keras
    from keras import layers

    inputs = keras.Input((None, None, 3))
    x = layers.Conv2D(8, 3, activation="relu")(inputs)
    x = layers.Conv2D(2, 1, activation="softmax", name="prob")(x)
    return keras.Model(inputs, x, name="fully_convolutional")
