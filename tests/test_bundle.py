"""edgepad bundle: layout, manifest, runtime copy, and reference outputs checked against TensorFlow itself."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

LEGACY_H5 = Path(__file__).parent / "fixtures" / "legacy_h5"
EDGEPAD = [sys.executable, "-m", "edgepad"]


def test_bundle_layout_and_manifest(bundle_dir):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    on_disk = {p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*") if p.is_file()} - {"manifest.json"}
    assert {f["path"] for f in manifest["files"]} == on_disk
    for entry in manifest["files"]:
        data = (bundle_dir / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["size"]
    assert sorted(manifest["models"]) == ["classifier", "onet", "pnet", "rnet"]
    assert manifest["models"]["classifier"] == json.loads((bundle_dir / "models/classifier/edgepad.json").read_text())
    assert {"edgepad", "python", "onnxruntime", "numpy"} <= set(manifest["versions"])
    for name in manifest["models"]:
        assert (bundle_dir / "models" / name / "model.onnx").is_file()


def test_runtime_is_a_copy_of_the_installed_package_without_caches(bundle_dir):
    import edgepad.runtime

    source = Path(edgepad.runtime.__file__).parent
    expected = {p.relative_to(source).as_posix() for p in source.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    runtime_copy = bundle_dir / "runtime"
    copied = {p.relative_to(runtime_copy).as_posix() for p in runtime_copy.rglob("*") if p.is_file()}
    assert copied == expected and "vim3_infer.py" in copied
    for relative in expected:
        assert (bundle_dir / "runtime" / relative).read_bytes() == (source / relative).read_bytes()


def test_classifier_reference_outputs_match_tensorflow(bundle_dir, faces_dir):
    """The host outputs the board is held to are the Keras model's own (TensorFlow, via tf_keras)."""
    import tf_keras

    inputs = np.load(bundle_dir / "reference" / "inputs.npz")
    outputs = np.load(bundle_dir / "reference" / "outputs.npz")
    assert set(inputs.files) == {"classifier", "pnet", "rnet", "onet"}
    x = inputs["classifier"]
    assert x.dtype == np.float32 and x.shape[1:] == (112, 112, 3)
    assert len(x) == 4 + len(list(faces_dir.glob("*")))  # synthetic images plus the sample photos
    model = tf_keras.models.load_model(str(LEGACY_H5 / "pad_mobilenet.h5"), compile=False)
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(outputs["classifier/pad_prob"], expected, atol=1e-4)
    for net, size in (("rnet", 24), ("onet", 48)):
        assert inputs[net].shape[1:] == (size, size, 3)
        assert outputs[f"{net}/face_prob"].shape == (len(inputs[net]), 2)
        np.testing.assert_allclose(outputs[f"{net}/face_prob"].sum(axis=1), 1.0, atol=1e-5)  # a softmax


def test_bad_classifier_folder_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "not_a_model").mkdir()
    out = tmp_path / "bundle"
    ran = subprocess.run(EDGEPAD + ["bundle", "-o", str(out), "--classifier", str(tmp_path / "not_a_model")],
                         capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert ran.returncode != 0
    assert ran.stderr.strip().splitlines() == [
        f"error: --classifier {tmp_path / 'not_a_model'}: no edgepad.json there; "
        "pass an `edgepad convert` output folder"]
    assert not out.exists() and not list(tmp_path.glob(".bundle*"))


def test_deploy_refuses_a_bundle_changed_after_it_was_built(bundle_dir, tmp_path):
    from edgepad.deploy.pipeline import load_bundle
    from edgepad.errors import InputFileError

    from support.deploy_fixtures import copy_bundle

    changed = copy_bundle(bundle_dir, tmp_path / "changed")
    with open(changed / "models/classifier/model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(InputFileError, match=r"model\.onnx: changed since the bundle was built"):
        load_bundle(changed)


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "a/../../b", "a\\b"])
def test_manifest_paths_that_leave_the_bundle_are_refused(tmp_path, path):
    from edgepad.deploy.manifest import load
    from edgepad.errors import InputFileError

    (tmp_path / "manifest.json").write_text(json.dumps({"files": [{"path": path, "sha256": "0" * 64, "size": 1}]}))
    with pytest.raises(InputFileError, match="leaves the bundle"):
        load(tmp_path)
