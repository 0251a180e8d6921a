"""Which backend runs each model when none is chosen: the NPU where the model has NPU files, else the CPU, said.

The NPU files here are placeholders beside real convert outputs; KSNN is the test stand-in (EDGEPAD_KSNN_API),
which computes with the folder's float model, so the faces can be compared with the CPU's.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import cv2
import ksnn_standin
import numpy as np
import pytest

NETS = ("pnet", "rnet", "onet", "classifier")


def with_npu_files(source, destination):
    """A copy of a convert output whose card lists NPU files (an NBG and its library), as the vim3 target does."""
    shutil.copytree(str(source), str(destination))
    (destination / "vim3").mkdir()
    (destination / "vim3" / "network_binary.nb").write_bytes(b"VPMN" + bytes(60))
    card = json.loads((destination / "edgepad.json").read_text())
    shape = card["input"]
    ksnn_standin.write_placeholder_library(destination / "vim3" / f"libnn_{source.name}.so", "../model.onnx",
                                           (1, shape["channels"], shape["height"], shape["width"]))
    card["targets"]["vim3"] = {"nb": "vim3/network_binary.nb", "library": f"vim3/libnn_{source.name}.so",
                               "platform": "ONNX"}
    (destination / "edgepad.json").write_text(json.dumps(card))
    return destination


def pnet_with_sizes(source, destination, sizes):
    """PNet with one placeholder NBG per input size in `sizes`, as the detector's vim3 compile lays them out."""
    shutil.copytree(str(source), str(destination))
    (destination / "vim3").mkdir()
    entries = {}
    for height, width in sizes:
        key = f"{height}x{width}"
        (destination / "vim3" / f"pnet_{key}.nb").write_bytes(b"VPMN" + bytes(60))
        ksnn_standin.write_placeholder_library(destination / "vim3" / f"libnn_pnet_{key}.so", "../model.open.onnx",
                                               (1, 3, height, width))
        out_h, out_w = (height - 1) // 2 - 4, (width - 1) // 2 - 4  # 3x3 valid, 2x2 'same' pool, two 3x3 valid
        entries[key] = {"nb": f"vim3/pnet_{key}.nb", "library": f"vim3/libnn_pnet_{key}.so",
                        "outputs": [{"name": "bbox_reg", "shape": [1, out_h, out_w, 4]},
                                    {"name": "face_prob", "shape": [1, out_h, out_w, 2]}]}
    card = json.loads((destination / "edgepad.json").read_text())
    card["targets"]["vim3"] = {"platform": "ONNX", "sizes": entries}
    (destination / "edgepad.json").write_text(json.dumps(card))
    return destination


def board_bundle(bundle, folder, npu=(), pnet_sizes=None):
    """The bundle's runtime and models, with NPU files for the models named in `npu`."""
    shutil.copytree(str(bundle / "runtime"), str(folder / "runtime"))
    for name in NETS:
        source, target = bundle / "models" / name, folder / "models" / name
        if name == "pnet" and pnet_sizes is not None:
            pnet_with_sizes(source, target, pnet_sizes)
        elif name in npu:
            with_npu_files(source, target)
        else:
            shutil.copytree(str(source), str(target))
    return folder


@pytest.fixture
def standin_ksnn(monkeypatch):
    monkeypatch.setenv("EDGEPAD_KSNN_API", "ksnn_standin")


def test_models_with_npu_files_run_on_the_npu_by_default_the_rest_on_the_cpu_with_one_note(bundle, faces, tmp_path,
                                                                                       standin_ksnn):
    from runtime.bundle import load_pipeline

    folder = board_bundle(bundle, tmp_path / "b", npu=("rnet", "onet", "classifier"))
    notes = []
    pipeline = load_pipeline(str(folder), warn=notes.append)
    assert pipeline.backend_names() == {"pnet": "onnxruntime", "rnet": "ksnn", "onet": "ksnn", "classifier": "ksnn"}
    assert len(notes) == 1 and notes[0].startswith("pnet runs on onnxruntime: no NPU files"), notes

    image = cv2.imread(str(faces / "astronaut.png"))
    on_npu = pipeline.process(image).faces
    on_cpu = load_pipeline(str(bundle), "onnxruntime").process(image).faces
    assert len(on_npu) == len(on_cpu) == 1
    np.testing.assert_allclose(on_npu[0].box, on_cpu[0].box, atol=0.5)
    assert on_npu[0].is_live == on_cpu[0].is_live


def test_without_npu_files_every_model_runs_on_the_cpu_with_one_note(bundle):
    from runtime.bundle import load_pipeline

    notes = []
    pipeline = load_pipeline(str(bundle), warn=notes.append)
    assert set(pipeline.backend_names().values()) == {"onnxruntime"}
    assert notes == ["pnet, rnet, onet, classifier run on onnxruntime: no NPU files in their folders "
                     "(convert with --to onnx,vim3 for the NPU)"]


def test_backend_option_overrides_the_choice(bundle, tmp_path, standin_ksnn):
    from runtime.bundle import load_pipeline

    folder = board_bundle(bundle, tmp_path / "b", npu=NETS)
    notes = []
    assert set(load_pipeline(str(folder), "onnxruntime", warn=notes.append).backend_names().values()) == {"onnxruntime"}
    assert notes == []
    assert set(load_pipeline(str(folder), warn=notes.append).backend_names().values()) == {"ksnn"}
    assert notes == []


def test_npu_files_that_cannot_run_fail_loudly_instead_of_falling_back(bundle, tmp_path, monkeypatch):
    """No KSNN here: the default choice loads the placeholder library with edgepad's npu_loader, which refuses it."""
    from runtime.backends import BackendError
    from runtime.bundle import load_pipeline

    monkeypatch.delenv("EDGEPAD_KSNN_API", raising=False)
    folder = board_bundle(bundle, tmp_path / "b", npu=("classifier",))
    with pytest.raises(BackendError, match="libnn_classifier.so"):
        load_pipeline(str(folder), warn=lambda message: None)


def test_a_pnet_size_without_an_nbg_runs_on_the_cpu_with_a_note(bundle, faces, tmp_path, standin_ksnn):
    import ksnn_standin

    from runtime.bundle import load_pipeline
    from runtime.detector import DetectorSettings, pyramid_sizes

    image = cv2.imread(str(faces / "astronaut.png"))
    sizes = pyramid_sizes(image.shape[0], image.shape[1], 40)
    compiled, missing = sizes[:-2], sizes[-2:]
    folder = board_bundle(bundle, tmp_path / "b", npu=NETS, pnet_sizes=compiled)
    notes = []
    pipeline = load_pipeline(str(folder), settings=DetectorSettings(40), warn=notes.append)
    assert pipeline.backend_names()["pnet"] == "ksnn" and notes == []
    ksnn_standin.StandInKSNN.calls.clear()
    on_npu = pipeline.process(image).faces
    pipeline.process(image)  # a second frame: no note again
    expected = [f"pnet: no NPU model for input {h}x{w} ({len(compiled)} sizes compiled); that size runs on onnxruntime"
                for h, w in missing]
    assert notes == expected
    pnet_inits = [c for c in ksnn_standin.StandInKSNN.calls if c[0] == "nn_init" and "pnet" in c[2]]
    assert len(pnet_inits) == len(compiled)
    on_cpu = load_pipeline(str(bundle), "onnxruntime", settings=DetectorSettings(40)).process(image).faces
    assert len(on_npu) == len(on_cpu) == 1
    np.testing.assert_allclose(on_npu[0].box, on_cpu[0].box, atol=0.5)


def test_vim3_infer_json_says_which_backend_ran_each_model(bundle, faces, tmp_path):
    folder = board_bundle(bundle, tmp_path / "b", npu=("onet", "classifier"))
    env = dict(os.environ, EDGEPAD_KSNN_API="ksnn_standin", PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
    script = str(folder / "runtime" / "vim3_infer.py")
    image = str(faces / "astronaut.png")
    ran = subprocess.run([sys.executable, script, "--bundle", str(folder), "--image", image],
                         env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["backends"] == {"pnet": "onnxruntime", "rnet": "onnxruntime", "onet": "ksnn",
                                                  "classifier": "ksnn"}
    assert ran.stderr.count("note:") == 1 and "pnet, rnet run on onnxruntime: no NPU files" in ran.stderr
    forced = subprocess.run([sys.executable, script, "--bundle", str(folder), "--image", image, "--backend", "opencv",
                             "--bench", "1", "--json"], env=env, capture_output=True, text=True)
    assert forced.returncode == 0, forced.stderr
    assert set(json.loads(forced.stdout)["backends"].values()) == {"opencv"}
