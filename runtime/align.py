"""Face alignment: the five landmarks onto the ArcFace template by a least-squares similarity transform (Umeyama).

The 112x112 template is insightface's `arcface_dst`. Other sizes scale it as insightface's `estimate_norm`
does: by size/112 when the size is a multiple of 112, else by size/128 with an 8*ratio shift in x (the
template was drawn for 112 = 128 - 2*8).
"""
from __future__ import annotations

import cv2
import numpy as np

ARCFACE_112 = np.array([
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
], dtype=np.float64)


def arcface_template(size: int = 112) -> np.ndarray:
    if size % 112 == 0:
        ratio, shift = size / 112.0, 0.0
    else:
        ratio = size / 128.0
        shift = 8.0 * ratio
    return ARCFACE_112 * ratio + np.array([shift, 0.0])


def umeyama_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of the similarity (rotation, uniform scale, translation) that best maps src onto dst.

    Umeyama (1991), "Least-squares estimation of transformation parameters between two point patterns".
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(covariance) < 0:
        sign[-1] = -1.0  # a reflection would fit better; a face must not be mirrored
    rotation = u @ np.diag(sign) @ vt
    variance = src_c.var(axis=0).sum()
    scale = (singular * sign).sum() / variance if variance > 0 else 1.0
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """The face warped to size x size on the ArcFace template; black outside the image."""
    matrix = umeyama_similarity(np.asarray(landmarks, np.float64).reshape(5, 2), arcface_template(size))
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
