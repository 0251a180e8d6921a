"""The runtime's MTCNN against the `mtcnn` package itself: same nets, same faces, and a minimum face size that works."""
from __future__ import annotations

import json

import numpy as np
import pytest

from support.runtime_fixtures import iou

PACKAGE_THRESHOLDS = (0.6, 0.7, 0.8)  # the package's defaults, so both run the same decision rule
# The package rounds its landmarks to whole pixels and crops with tf.image.crop_and_resize (edgepad: cv2), so
# points differ by about 1.5 px on average; a tilted face in t1.jpg reaches 6 px at a 96 px face.
LANDMARK_MEAN_TOLERANCE_PX = 3.0
LANDMARK_MAX_TOLERANCE = 0.07  # of the face's width


@pytest.fixture(scope="session")
def package_detector():
    from mtcnn import MTCNN

    return MTCNN()


def package_faces(detector, image_bgr, min_face_size):
    rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
    faces = detector.detect_faces(rgb, box_format="xyxy", min_face_size=min_face_size)
    order = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
    return [(np.asarray(f["box"], float), np.asarray([f["keypoints"][k] for k in order], float)) for f in faces]


def edgepad_detector(models, min_face_size, backend="onnxruntime", thresholds=(0.6, 0.7, 0.7)):
    from edgepad.runtime.detector import DetectorSettings, load_detector

    return load_detector(str(models), backend, DetectorSettings(min_face_size=min_face_size, thresholds=thresholds))


def best_match(box, faces):
    scores = [iou(box, other.box) for other in faces]
    return (int(np.argmax(scores)), max(scores)) if scores else (None, 0.0)


def test_keras_nets_reproduce_the_package_nets():
    from mtcnn.stages import StageONet, StagePNet, StageRNet

    from edgepad.convert.mtcnn_keras import build_net

    rng = np.random.default_rng(0)
    for name, stage, shape in (("pnet", StagePNet, (2, 37, 53, 3)), ("rnet", StageRNet, (4, 24, 24, 3)),
                               ("onet", StageONet, (4, 48, 48, 3))):
        reference = stage().model
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        expected = [np.asarray(t) for t in reference(x)]
        actual = [np.asarray(t) for t in build_net(name)(x)]
        for e, a in zip(expected, actual, strict=True):
            np.testing.assert_allclose(a, e, atol=1e-6, err_msg=name)


def test_converted_nets_report_parity_with_keras(detector_models):
    for net in ("pnet", "rnet", "onet"):
        report = json.loads((detector_models / net / "report.json").read_text())
        assert report["onnx"]["passed"] and report["onnx_open"]["passed"], net
        card = json.loads((detector_models / net / "edgepad.json").read_text())
        assert card["preprocess"]["std"][0] == 128.0 and card["preprocess"]["channel_order"] == "rgb"


@pytest.mark.parametrize("photo", ["astronaut_image", "t1_image"])
def test_faces_agree_with_the_mtcnn_package_at_min_face_20(photo, request, detector_models, package_detector):
    image = request.getfixturevalue(photo)
    reference = package_faces(package_detector, image, 20)
    ours = edgepad_detector(detector_models, 20, thresholds=PACKAGE_THRESHOLDS).detect(image)
    # The package also returns boxes smaller than the minimum face it was given (its pyramid ignores it).
    expected = [(box, points) for box, points in reference if min(box[2] - box[0], box[3] - box[1]) >= 20]
    assert expected and len(ours) == len(expected)
    distances = []
    for box, points in expected:
        index, overlap = best_match(box, ours)
        assert overlap >= 0.8, (box, ours[index].box if index is not None else None)
        distance = np.linalg.norm(ours[index].landmarks - points, axis=1)
        assert distance.max() <= LANDMARK_MAX_TOLERANCE * (box[2] - box[0]), (points, ours[index].landmarks)
        distances.extend(distance)
    assert np.mean(distances) <= LANDMARK_MEAN_TOLERANCE_PX


@pytest.mark.parametrize("photo", ["astronaut_image", "t1_image"])
def test_min_face_40_still_finds_every_face_larger_than_40(photo, request, detector_models, package_detector):
    image = request.getfixturevalue(photo)
    large = [box for box, _ in package_faces(package_detector, image, 20) if min(box[2] - box[0], box[3] - box[1]) > 40]
    assert large
    ours = edgepad_detector(detector_models, 40).detect(image)
    for box in large:
        assert best_match(box, ours)[1] >= 0.8, box


def test_minimum_face_size_bounds_what_is_found(detector_models, t1_image):
    """t1.s faces are 95-145 px tall: a 250 px minimum finds none of them, 40 finds all six."""
    assert len(edgepad_detector(detector_models, 40).detect(t1_image)) == 6
    assert edgepad_detector(detector_models, 250).detect(t1_image) == []


def test_landmarks_are_in_the_documented_order(detector_models, astronaut_image):
    (face,) = edgepad_detector(detector_models, 40).detect(astronaut_image)
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_opencv_backend_finds_the_same_faces_as_onnxruntime(detector_models, t1_image):
    with_ort = edgepad_detector(detector_models, 40, "onnxruntime").detect(t1_image)
    with_opencv = edgepad_detector(detector_models, 40, "opencv").detect(t1_image)
    assert len(with_ort) == len(with_opencv) == 6
    for a, b in zip(with_ort, with_opencv, strict=True):
        np.testing.assert_allclose(a.box, b.box, atol=0.5)
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=0.5)


def test_edgepad_models_detector_writes_checked_convert_outputs(tmp_path):
    from click.testing import CliRunner

    from edgepad.cli import cli

    out = tmp_path / "detector"
    result = CliRunner().invoke(cli, ["models", "detector", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["folder"] == str(out)
    for net in ("pnet", "rnet", "onet"):
        assert summary["nets"][net]["onnx"]["passed"] and summary["nets"][net]["onnx_open"]["passed"]
        card = json.loads((out / net / "edgepad.json").read_text())
        assert {"onnx", "onnx_open"} <= set(card["targets"]) and card["mtcnn"]["net"] == net
    again = CliRunner().invoke(cli, ["models", "detector", "-o", str(out)])
    assert again.exit_code != 0 and "--force" in again.stderr
