"""`edgepad train`: the seed's live/spoof classifier, a Keras MobileNet on 112x112 aligned crops.

Pixels are normalised outside the model, as (x - 127.5) / 127.5 in RGB order, which is `edgepad convert`'s
default preprocessing, so the saved .h5 converts with no options. Augmentation also lives in the input
pipeline: the saved graph is only the network the board will run. The saved model is the best checkpoint
with its batch-norm statistics recomputed over the training images (see recompute_batchnorm_statistics).
"""
from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edgepad.errors import InputFileError, UsageError

from .crops import Crop, list_crops, resolve_split

INPUT_SIZE = 112
MEAN, STD = 127.5, 127.5
BATCHNORM_BATCHES = 200  # training batches averaged for the final batch-norm statistics


@dataclass
class TrainOptions:
    data: Path
    out: Path  # the .h5 file
    val_data: Path | None = None
    val_fraction: float = 0.2  # of the subjects, held out when no --val-data is given
    epochs: int = 50
    batch_size: int = 32
    alpha: float = 0.25
    learning_rate: float = 1e-3
    seed: int = 0
    force: bool = False


@dataclass
class TrainResult:
    out: Path
    epochs_run: int
    monitor: str
    best: float
    history: dict[str, list[float]]
    train_images: dict[str, int]
    val_images: dict[str, int]
    devices: list[str]
    batchnorm_batches: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"out": str(self.out), "epochs_run": self.epochs_run, "monitor": self.monitor, "best": self.best,
                "train_images": self.train_images, "val_images": self.val_images, "devices": self.devices,
                "batchnorm_batches": self.batchnorm_batches, "history": self.history, "warnings": self.warnings}


def build_classifier(alpha: float, keras):
    """MobileNet (no pretrained weights) -> global average pooling -> dropout 0.5 -> 2-way softmax `pad_prob`."""
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
    backbone = keras.applications.MobileNet(input_tensor=inputs, alpha=alpha, include_top=False, weights=None,
                                            pooling="avg")
    x = keras.layers.Dropout(0.5, name="dropout")(backbone.output)
    outputs = keras.layers.Dense(2, activation="softmax", name="pad_prob")(x)
    return keras.Model(inputs, outputs, name=f"pad_mobilenet_{alpha:g}")


def train_classifier(options: TrainOptions, log=None) -> TrainResult:
    """The Python API behind `edgepad train`. Writes options.out only when training finished."""
    _check_options(options)
    train_crops, val_crops, warnings = _split(options)

    import keras
    import tensorflow as tf
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)  # the .h5 format is what `edgepad convert` reads; no "legacy" nag
    keras.utils.set_random_seed(options.seed)
    gpus = tf.config.list_physical_devices("GPU")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    devices = [d.name for d in gpus] or ["CPU"]
    with strategy.scope():
        model = build_classifier(options.alpha, keras)
        model.compile(optimizer=keras.optimizers.Adam(options.learning_rate), loss="categorical_crossentropy",
                      metrics=["accuracy"])

    batch = options.batch_size * max(1, strategy.num_replicas_in_sync)
    train_ds = _dataset(tf, train_crops, batch, training=True, seed=options.seed)
    val_ds = _dataset(tf, val_crops, batch, training=False, seed=options.seed) if val_crops else None
    monitor = "val_loss" if val_ds is not None else "loss"
    options.out.parent.mkdir(parents=True, exist_ok=True)
    partial = options.out.with_name(f".{options.out.stem}.partial-{os.getpid()}.h5")
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(partial), monitor=monitor, save_best_only=True),
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.1, patience=5, min_lr=1e-6),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=10, restore_best_weights=True),
    ]
    if log is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: log(epoch, logs)))
    try:
        history = model.fit(train_ds, validation_data=val_ds, epochs=options.epochs, callbacks=callbacks,
                            class_weight=_balanced_weights(train_crops), shuffle=False, verbose=0)
        if partial.exists():  # the best epoch's weights, not the last epoch's
            model = keras.models.load_model(str(partial), compile=False)
        plain_train_ds = _dataset(tf, train_crops, batch, training=False, seed=options.seed)
        batchnorm_batches = recompute_batchnorm_statistics(model, plain_train_ds, keras)
        model.save(str(partial))
        os.replace(partial, options.out)
    finally:
        if partial.exists():
            partial.unlink()
    values = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    return TrainResult(options.out, len(values.get("loss", [])), monitor, min(values.get(monitor, [float("nan")])),
                       values, dict(Counter(c.label for c in train_crops)), dict(Counter(c.label for c in val_crops)),
                       devices, batchnorm_batches, warnings)


def recompute_batchnorm_statistics(model, dataset, keras, max_batches: int = BATCHNORM_BATCHES) -> int:
    """Set every BatchNormalization's inference mean and variance to their average over training batches.

    Keras keeps them as running averages with momentum 0.99, which need many hundred steps to forget their
    start (mean 0, variance 1); until then the model computes something else at inference than in training,
    and a short run on a small set scores every face the same. Averaging the batch statistics of the
    (unaugmented) training images fixes that without changing a learned weight ("precise BN").
    """
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    count = 0
    try:
        for count, (images, _) in enumerate(dataset.take(max_batches), start=1):
            for layer in layers:
                layer.momentum = (count - 1) / count  # running average of the batch statistics seen so far
            model(images, training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return count


def _check_options(options: TrainOptions) -> None:
    if options.out.suffix.lower() not in (".h5", ".hdf5"):
        raise UsageError(f"-o {options.out}: give a .h5 file name (the format `edgepad convert` reads)")
    if options.out.exists() and not options.force:
        raise UsageError(f"-o {options.out}: exists; pass --force to replace it")
    if options.epochs < 1 or options.batch_size < 1:
        raise UsageError(f"--epochs {options.epochs} --batch-size {options.batch_size}: both must be 1 or more")
    if not 0 < options.alpha <= 1.0:
        raise UsageError(f"--alpha {options.alpha}: MobileNet's width multiplier is in (0, 1], e.g. 0.25, 0.5, 1.0")
    if not 0 <= options.val_fraction < 1:
        raise UsageError(f"--val-fraction {options.val_fraction}: give a fraction of the subjects in [0, 1)")


def _split(options: TrainOptions) -> tuple[list[Crop], list[Crop], list[str]]:
    """Training and validation crops; without --val-data whole subjects are held out, so no face is in both."""
    crops = list_crops(resolve_split(options.data, "Train"))
    labels = {c.label for c in crops}
    if labels != {"live", "spoof"}:
        raise InputFileError(f"DATA {options.data}: has only {', '.join(labels)} crops; "
                             "training needs live/ and spoof/")
    if options.val_data is not None:
        return crops, list_crops(resolve_split(options.val_data, "Test"), "--val-data"), []
    subjects = sorted({c.subject for c in crops})
    held = max(1, round(len(subjects) * options.val_fraction)) if options.val_fraction > 0 else 0
    if held >= len(subjects):
        return crops, [], [f"only {len(subjects)} subject(s): no validation split; "
                           "checkpoints follow the training loss"]
    held_out = set(random.Random(options.seed).sample(subjects, held))
    return [c for c in crops if c.subject not in held_out], [c for c in crops if c.subject in held_out], []


def _balanced_weights(crops: list[Crop]) -> dict[int, float]:
    """SiW has several spoof videos per live one: weigh the classes so each counts the same."""
    counts = Counter(c.label_index for c in crops)
    return {index: len(crops) / (2.0 * counts[index]) for index in (0, 1) if counts[index]}


def _dataset(tf, crops: list[Crop], batch: int, training: bool, seed: int):
    paths = [str(c.path) for c in crops]
    labels = tf.one_hot([c.label_index for c in crops], 2)
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    if training:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)  # here, so fit() must not

    def load(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)  # RGB
        image = tf.image.resize(tf.cast(image, tf.float32), (INPUT_SIZE, INPUT_SIZE))
        return image, label

    def augment(image, label):
        # Mild on purpose: colour cast, blur and moiré are what tells a spoof, so they must survive.
        image = tf.image.random_flip_left_right(image)
        image = tf.image.random_brightness(image, 20.0)
        image = tf.image.random_contrast(image, 0.85, 1.15)
        scale = tf.random.uniform([], 1.0, 1.12)
        size = tf.cast(tf.round(INPUT_SIZE * scale), tf.int32)
        image = tf.image.resize(image, (size, size))
        image = tf.image.random_crop(image, (INPUT_SIZE, INPUT_SIZE, 3))
        return tf.clip_by_value(image, 0.0, 255.0), label

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda image, label: ((image - MEAN) / STD, label), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)
