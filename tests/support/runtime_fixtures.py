"""Session fixtures of the runtime tests (a pytest plugin: conftest.py registers it), and their helpers."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from .runtime_models import build_bundle_dir, classifier_dir, detector_models_dir


@pytest.fixture(scope="session")
def detector_models():
    return detector_models_dir()


@pytest.fixture(scope="session")
def classifier_model():
    return classifier_dir()


@pytest.fixture(scope="session")
def runtime_bundle(tmp_path_factory):
    return build_bundle_dir(tmp_path_factory.mktemp("runtime") / "bundle")


@pytest.fixture(scope="session")
def pipeline(runtime_bundle):
    from edgepad.runtime.bundle import load_pipeline

    return load_pipeline(str(runtime_bundle), "onnxruntime")


@pytest.fixture(scope="session")
def t1_image(faces_dir):
    return cv2.imread(str(faces_dir / "t1.jpg"))


@pytest.fixture(scope="session")
def astronaut_image(faces_dir):
    return cv2.imread(str(faces_dir / "astronaut.png"))


def iou(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="session")
def t1_true_faces(t1_image):
    """The faces of t1.jpg (boxes x1, y1, x2, y2) as the `mtcnn` package finds them, the independent reference
    for where the faces of a video cut from the photo are (cached: the package needs TensorFlow)."""
    import json

    from mtcnn import MTCNN

    from edgepad.convert.mtcnn_keras import mtcnn_package_version

    from .board_env import test_cache

    cache = test_cache() / f"t1-faces-mtcnn-{mtcnn_package_version()}.json"
    if not cache.is_file():
        rgb = np.ascontiguousarray(t1_image[:, :, ::-1])
        faces = MTCNN().detect_faces(rgb, box_format="xyxy", min_face_size=20)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps([[float(v) for v in f["box"]] for f in faces]))
    boxes = [box for box in json.loads(cache.read_text()) if min(box[2] - box[0], box[3] - box[1]) >= 40]
    assert len(boxes) == 6, boxes  # t1.jpg's six people; the package also reports a 14 px speck
    return np.array(boxes)
