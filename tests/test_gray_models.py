"""Models whose input is not three square channels: a grayscale, non-square classifier converts (ONNX and Caffe
within tolerance of Keras), bundles, and scores real faces from `edgepad run` as Keras scores the same grey crops;
4-channel inputs get an opaque alpha channel."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgepad.convert.pipeline import ConvertOptions, convert_model
from edgepad.errors import UsageError
from edgepad.runtime.align import align_face
from edgepad.runtime.preprocess import normalize

HEIGHT, WIDTH = 40, 32  # non-square: catches height/width swaps in resize and layout


def gray_classifier(channels=1):
    import keras
    from keras import layers

    inputs = keras.Input((HEIGHT, WIDTH, channels))
    x = layers.Conv2D(6, 3, strides=2, activation="relu")(inputs)
    x = layers.Conv2D(8, 3, activation="tanh")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(2, activation="softmax")(x), name=f"c{channels}")
    rng = np.random.default_rng(2)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.6 for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def gray_out(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gray")
    model = gray_classifier()
    model.save(str(folder / "gray.h5"))
    result = convert_model(ConvertOptions(model=folder / "gray.h5", out=folder / "out", targets=("onnx", "caffe")))
    return model, result


def test_grayscale_non_square_model_converts_to_onnx_and_caffe(gray_out):
    _, result = gray_out
    card = result.card
    assert card["input"] == {"height": HEIGHT, "width": WIDTH, "channels": 1, "dtype": "float32"}
    assert card["preprocess"]["channel_order"] == "gray" and card["preprocess"]["mean"] == [127.5]
    assert result.report["onnx"]["passed"] and result.report["caffe"]["passed"]
    assert result.report["caffe"]["vs_keras"]["max_abs"] <= 1e-4


def test_grayscale_model_scores_faces_from_edgepad_run_like_keras(gray_out, faces_dir, tmp_path, monkeypatch,
                                                                 detector_models):
    from edgepad.cli import cli
    from edgepad.convert.mtcnn_models import default_cache_dir
    from edgepad.deploy.bundle import BundleOptions, build_bundle

    model, result = gray_out
    bundle = tmp_path / "bundle"
    build_bundle(BundleOptions(out=bundle, classifier=result.out, detector=detector_models))
    monkeypatch.setenv("EDGEPAD_HOME", str(tmp_path / "home"))
    cache = default_cache_dir()
    cache.parent.mkdir(parents=True)
    cache.symlink_to(detector_models, target_is_directory=True)
    image = cv2.imread(str(faces_dir / "t1.jpg"))
    for source in (["--classifier", str(result.out)], ["--bundle", str(bundle)]):
        run = CliRunner().invoke(cli, ["run", str(faces_dir / "t1.jpg"), *source, "--json"])
        assert run.exit_code == 0, run.output
        faces = json.loads(run.stdout)["faces"]
        assert len(faces) == 6
        # Keras on the same aligned crops, turned grey and normalised here (not by the runtime's code)
        crops = [align_face(image, np.asarray(face["landmarks"]), HEIGHT) for face in faces]
        grey = np.stack([cv2.resize(cv2.cvtColor(c, cv2.COLOR_BGR2GRAY), (WIDTH, HEIGHT)) for c in crops])
        expected = np.asarray(model((grey[..., None].astype(np.float32) - 127.5) / 127.5))[:, 0]
        live = np.array([face["live"] for face in faces])
        assert np.ptp(expected) > 0.01  # the faces get different scores, so a wrong crop or channel would show
        assert np.abs(live - expected).max() <= 2e-3, (source[0], live, expected)  # measured 1e-4 (landmarks rounded)


def test_four_channel_model_gets_an_opaque_alpha_channel(tmp_path):
    model = gray_classifier(channels=4)
    model.save(str(tmp_path / "rgba.h5"))
    result = convert_model(ConvertOptions(model=tmp_path / "rgba.h5", out=tmp_path / "out", targets=("onnx",)))
    assert result.card["preprocess"]["channel_order"] == "rgba" and result.report["onnx"]["passed"]
    bgr = np.zeros((10, 8, 3), np.uint8)
    bgr[..., 0] = 200  # blue
    x = normalize(bgr, result.card["preprocess"], HEIGHT, WIDTH)
    assert x.shape == (HEIGHT, WIDTH, 4)
    np.testing.assert_allclose(x[0, 0] * 127.5 + 127.5, [0, 0, 200, 255], atol=1e-3)


def test_channel_order_that_does_not_fit_the_input_is_one_clear_error(tmp_path):
    model = gray_classifier()
    model.save(str(tmp_path / "gray.h5"))
    with pytest.raises(UsageError, match="--channel-order rgb: the model's input has 1 channel.*choose gray"):
        convert_model(ConvertOptions(model=tmp_path / "gray.h5", out=tmp_path / "out", targets=("onnx",),
                                     channel_order="rgb"))
    assert not (tmp_path / "out").exists()


def test_calibration_images_for_a_grey_model_are_grey(gray_out, faces_dir, tmp_path):
    from edgepad.convert.parity_inputs import normalized_pixels, read_pixels

    _, result = gray_out
    folder = tmp_path / "calibration"
    folder.mkdir()
    image = cv2.imread(str(faces_dir / "t1.jpg"))
    cv2.imwrite(str(folder / "t1.png"), image)
    pixels = read_pixels(folder / "t1.png", result.card, "--calibration")  # what the NPU graph takes
    gray = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (WIDTH, HEIGHT)).astype(np.float32)
    assert pixels.shape == (HEIGHT, WIDTH, 1)
    np.testing.assert_array_equal(pixels[..., 0], gray)
    np.testing.assert_allclose(normalized_pixels(pixels, result.card)[..., 0], (gray - 127.5) / 127.5, atol=1e-6)
