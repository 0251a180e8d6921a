"""A grayscale, non-square classifier through a quantized target: calibrated with grey faces (`--to tflite`),
bundled, and run by `edgepad run --backend tflite` on t1.jpg, scoring each face as Keras scores the same grey crop."""
from __future__ import annotations

import json

import cv2
import numpy as np
from click.testing import CliRunner

from edgepad.cli import cli
from edgepad.convert.parity import QUANTIZED_SCORE_ATOL
from edgepad.runtime.align import align_face

from support.calibration_faces import held_out_face_dirs

HEIGHT, WIDTH = 36, 28  # non-square


def tiny_gray_classifier():
    import keras
    from keras import layers

    keras.utils.set_random_seed(4)
    inputs = keras.Input((HEIGHT, WIDTH, 1))
    x = layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = layers.Conv2D(8, 3, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(2, activation="softmax")(x), name="gray_tiny")
    rng = np.random.default_rng(9)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5 for w in model.get_weights()])
    return model


def test_gray_model_calibrates_bundles_and_runs_on_tflite(tmp_path, faces_dir, detector_models):
    from edgepad.deploy.bundle import BundleOptions, build_bundle

    model = tiny_gray_classifier()
    model.save(str(tmp_path / "gray.h5"))
    calibration, evaluation = held_out_face_dirs(faces_dir)
    out = tmp_path / "out"
    converted = CliRunner().invoke(cli, ["convert", str(tmp_path / "gray.h5"), "-o", str(out), "--to", "onnx,tflite",
                                         "--calibration", str(calibration), "--eval-images", str(evaluation), "--json"])
    assert converted.exit_code == 0, converted.output
    card = json.loads((out / "edgepad.json").read_text())
    assert card["preprocess"]["channel_order"] == "gray" and card["input"]["channels"] == 1
    section = json.loads((out / "report.json").read_text())["tflite"]
    assert section["passed"] and section["cosine"] >= 0.98

    # the integer model takes one uint8 grey channel
    from ai_edge_litert.interpreter import Interpreter

    (model_input,) = Interpreter(model_path=str(out / "model.tflite")).get_input_details()
    assert list(model_input["shape"]) == [1, HEIGHT, WIDTH, 1] and model_input["dtype"] == np.uint8

    bundle = tmp_path / "bundle"
    build_bundle(BundleOptions(out=bundle, classifier=out, detector=detector_models))
    ran = CliRunner().invoke(cli, ["run", str(faces_dir / "t1.jpg"), "--bundle", str(bundle), "--backend", "tflite",
                                   "--json"])
    assert ran.exit_code == 0, ran.output
    faces = json.loads(ran.stdout.strip().splitlines()[-1])["faces"]
    assert len(faces) == 6
    # Keras (float) on the same aligned crops, turned grey and normalised here, not by the runtime's code
    image = cv2.imread(str(faces_dir / "t1.jpg"))
    crops = [align_face(image, np.asarray(face["landmarks"]), HEIGHT) for face in faces]
    grey = np.stack([cv2.resize(cv2.cvtColor(c, cv2.COLOR_BGR2GRAY), (WIDTH, HEIGHT)) for c in crops])
    expected = np.asarray(model((grey[..., None].astype(np.float32) - 127.5) / 127.5))[:, 0]
    live = np.array([face["live"] for face in faces])
    assert np.ptp(expected) > 0.01, expected  # faces score differently: a wrong channel or crop would show
    # measured 0.011 (uint8 in and out, int8 inside) against a spread of 0.40 between the faces
    assert np.abs(live - expected).max() <= QUANTIZED_SCORE_ATOL / 4, (live, expected)
