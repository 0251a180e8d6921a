"""A bundle (or any folder of convert outputs) as a ready pipeline: the detector's three nets, the classifier and
the embedding model.

BUNDLE/models/{pnet,rnet,onet}/ are the detector, BUNDLE/models/classifier/ the live/spoof model and
BUNDLE/models/embedding/ a face recognition model (both optional: without them the runtime only detects; a
folder whose card says task "embedding" is an embedding model wherever it sits). The host's detector cache has
pnet/, rnet/, onet/ at its top level.
"""
from __future__ import annotations

import os
import sys
from typing import List, Optional

from .align import align_face
from .backends import NPU_BACKEND, BackendError, MissingTargetError, cpu_backend, default_backend, load_model
from .classifier import LiveClassifier
from .detector import DetectorSettings, MtcnnDetector
from .embedder import FaceEmbedder, Gallery, is_embedding_card
from .frames import read_image
from .pipeline import FacePipeline

DETECTOR_NETS = ("pnet", "rnet", "onet")
EMBEDDING = "embedding"  # the bundle's folder for a recognition model


def models_root(bundle_dir: str) -> str:
    """BUNDLE/models when it exists, else the folder itself (a detector cache holds pnet/ directly)."""
    if not os.path.isdir(bundle_dir):
        raise BackendError(f"--bundle {bundle_dir}: no such folder")
    inner = os.path.join(bundle_dir, "models")
    return inner if os.path.isdir(inner) else bundle_dir


def load_any(model_dir: str, backend: Optional[str], warn=None, cpu_by_default: Optional[List[str]] = None):
    """The model on `backend`, or without one on the NPU when its folder has NPU files, else on the CPU backend
    (its name is added to `cpu_by_default`, for the caller's one note). A model the chosen NPU has no binary for
    falls back to the CPU backend, saying so once on stderr; so does each PNet input size without its own NBG."""
    warn = warn or _stderr
    name = os.path.basename(model_dir.rstrip("/"))
    chosen = backend or default_backend(model_dir)
    if backend is None and chosen != NPU_BACKEND and cpu_by_default is not None:
        cpu_by_default.append(name)
    try:
        model = load_model(model_dir, chosen)
    except MissingTargetError:
        fallback = cpu_backend()
        if chosen == fallback:
            raise
        model = load_model(model_dir, fallback)
        warn(f"{name} runs on {fallback}: it has no {chosen} model in its folder")
        return model
    if getattr(model, "size_fallback", False) is None:  # the NPU: sizes without an NBG run on the CPU
        model.size_fallback = lambda: load_model(model_dir, cpu_backend())
        model.warn = warn
    return model


def load_pipeline(bundle_dir: str, backend: Optional[str] = None, settings: Optional[DetectorSettings] = None,
                  threshold: Optional[float] = None, detector_dir: Optional[str] = None,
                  classifier_dir: Optional[str] = None, warn=None, gallery_dir: Optional[str] = None,
                  match_threshold: Optional[float] = None, embedding_dir: Optional[str] = None) -> FacePipeline:
    """`classifier_dir` may hold an embedding model too (its card decides); `gallery_dir` needs one."""
    root = models_root(bundle_dir) if bundle_dir else None
    detector_root = detector_dir or root
    missing = [n for n in DETECTOR_NETS if not detector_root or not os.path.isdir(os.path.join(detector_root, n))]
    if missing:
        raise BackendError(f"{detector_root or bundle_dir}: no detector models ({', '.join(missing)} missing); "
                           "build the bundle with --detector (see `edgepad models detector`)")
    on_cpu: List[str] = []
    nets = [load_any(os.path.join(detector_root, n), backend, warn, on_cpu) for n in DETECTOR_NETS]
    detector = MtcnnDetector(*nets, settings=settings)
    classifier = embedder = None
    classifier_dir = classifier_dir or (os.path.join(root, "classifier") if root else None)
    embedding_dir = embedding_dir or (os.path.join(root, EMBEDDING) if root else None)
    for folder in (classifier_dir, embedding_dir):
        if not folder or not os.path.isdir(folder):
            continue
        model = load_any(folder, backend, warn, on_cpu)
        if is_embedding_card(model.card):
            embedder = FaceEmbedder(model, match_threshold)
        else:
            classifier = LiveClassifier(model, threshold)
    if on_cpu:
        plural = len(on_cpu) > 1
        (warn or _stderr)(f"{', '.join(on_cpu)} {'run' if plural else 'runs'} on {cpu_backend()}: no NPU files in "
                          f"{'their folders' if plural else 'its folder'} (convert with --to onnx,vim3 for the NPU)")
    pipeline = FacePipeline(detector, classifier, embedder)
    if gallery_dir is not None:
        if embedder is None:
            raise BackendError(f"--gallery {gallery_dir}: needs an embedding model (models/{EMBEDDING}/ in the "
                               "bundle, or a recognition model's convert output)")
        pipeline.gallery = Gallery.enrol(gallery_dir, detector, embedder, read_image, align_face)
    elif match_threshold is not None and embedder is None:
        raise BackendError("--match-threshold is for an embedding model's --gallery; this pipeline has none")
    return pipeline


def _stderr(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)
