"""ArcFace alignment against scikit-image's SimilarityTransform on the same landmarks."""
from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import SimilarityTransform

from edgepad.runtime.align import ARCFACE_112, align_face, arcface_template, umeyama_similarity


def skimage_matrix(src, dst):
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        transform = SimilarityTransform.from_estimate(src, dst)
    else:
        transform = SimilarityTransform()
        assert transform.estimate(src, dst)
    return transform.params[:2]


@pytest.fixture(scope="module")
def t1_landmarks(detector_models, t1_image):
    from edgepad.runtime.detector import load_detector

    return [face.landmarks for face in load_detector(str(detector_models), "onnxruntime").detect(t1_image)]


def test_arcface_template_is_insightfaces():
    np.testing.assert_array_equal(arcface_template(112), ARCFACE_112)
    np.testing.assert_allclose(arcface_template(224), ARCFACE_112 * 2)
    np.testing.assert_allclose(arcface_template(128), ARCFACE_112 + [8.0, 0.0])


@pytest.mark.parametrize("size", [112, 128, 224])
def test_umeyama_matches_skimage_on_detected_landmarks(t1_landmarks, size):
    assert len(t1_landmarks) == 6
    for points in t1_landmarks:
        template = arcface_template(size)
        np.testing.assert_allclose(umeyama_similarity(points, template), skimage_matrix(points, template), atol=1e-9)


def test_umeyama_matches_skimage_on_hard_point_sets():
    rng = np.random.default_rng(3)
    mirrored = ARCFACE_112 * [-1, 1] + [200, 0]  # the best fit would be a reflection: both must refuse it
    sets = [mirrored, ARCFACE_112 * 0.01 + 5] + [rng.uniform(0, 500, (5, 2)) for _ in range(20)]
    for points in sets:
        np.testing.assert_allclose(umeyama_similarity(points, ARCFACE_112), skimage_matrix(points, ARCFACE_112),
                                   atol=1e-8)


def test_aligned_face_puts_the_landmarks_on_the_template(t1_image, t1_landmarks):
    import cv2

    for points in t1_landmarks:
        crop = align_face(t1_image, points, 112)
        assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
        moved = cv2.transform(points[None].astype(np.float64), umeyama_similarity(points, ARCFACE_112))[0]
        assert np.abs(moved - ARCFACE_112).max() < 12  # five points, four degrees of freedom: residuals are small


def test_a_face_cut_by_the_border_is_filled_with_black(t1_image, t1_landmarks):
    points = t1_landmarks[0].copy()
    crop_x = int(points[:, 0].mean())  # cut the image through the middle of the face
    image = np.ascontiguousarray(t1_image[:, crop_x:])
    aligned = align_face(image, points - [crop_x, 0], 112)
    left_half = aligned[:, :40]
    assert (left_half == 0).all(axis=-1).mean() > 0.5
