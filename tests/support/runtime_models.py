"""Models the runtime tests share, built once and cached: MTCNN's nets, a converted classifier, and a bundle.

Cached under test_cache(), keyed by the sources that make them, so a change to the converter rebuilds them.
"""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

from .board_env import test_cache

ROOT = Path(__file__).resolve().parents[2]
LEGACY_CLASSIFIER = ROOT / "tests" / "fixtures" / "legacy_h5" / "pad_mobilenet.h5"


def _source_key(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def _drop_stale(current: Path, prefix: str, min_age_s: float = 3600) -> None:
    """Caches made from older sources (the converter changes often, so they would pile up); only those
    untouched for an hour, so a test run still using one is not pulled from under it."""
    for old in current.parent.glob(f"{prefix}*"):
        if old != current and old.is_dir() and time.time() - old.stat().st_mtime > min_age_s:
            shutil.rmtree(old, ignore_errors=True)


def detector_models_dir() -> Path:
    """pnet/, rnet/, onet/ made by edgepad's own convert pipeline from the mtcnn package's weights."""
    from edgepad.convert.mtcnn_keras import mtcnn_package_version
    from edgepad.convert.mtcnn_models import detector_models

    folder = test_cache() / f"mtcnn-{mtcnn_package_version()}-{_source_key(ROOT / 'convert')}"
    _drop_stale(folder, "mtcnn-")
    return detector_models(folder)


def classifier_dir() -> Path:
    """The legacy Keras 2 PAD MobileNet fixture converted with convert_model (ONNX and, if present, Caffe)."""
    from edgepad.convert.pipeline import ConvertOptions, convert_model

    folder = test_cache() / f"classifier-{_source_key(ROOT / 'convert', LEGACY_CLASSIFIER)}"
    _drop_stale(folder, "classifier-")
    if not (folder / "edgepad.json").is_file():
        convert_model(ConvertOptions(model=LEGACY_CLASSIFIER, out=folder, force=True))
    return folder


def build_bundle_dir(out: Path) -> Path:
    """A bundle made by `edgepad bundle`'s own code: models, the runtime copy, reference inputs/outputs."""
    from edgepad.deploy.bundle import BundleOptions, build_bundle

    if out.exists():
        shutil.rmtree(out)
    build_bundle(BundleOptions(out=out, classifier=classifier_dir(), detector=detector_models_dir()))
    return out
