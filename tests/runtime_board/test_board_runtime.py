"""The runtime as the board runs it: the bundle's copy, Python 3.8, numpy, OpenCV and onnxruntime only."""
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

KSNN_CALL = {"platform": "ONNX", "reorder": "2 1 0", "layout": "chw"}  # what the vim3 target writes (ksnn_call)


def npu_copy(source, destination):
    """A copy of a convert output with NPU files beside it, as the vim3 target lays them out."""
    shutil.copytree(str(source), str(destination))
    (destination / "vim3").mkdir()
    (destination / "vim3" / "network_binary.nb").write_bytes(b"VPMN" + bytes(60))  # placeholder NBG
    card = json.loads((destination / "edgepad.json").read_text())
    shape = card["input"]
    ksnn_standin.write_placeholder_library(destination / "vim3" / f"libnn_{source.name}.so", "../model.onnx",
                                           (1, shape["channels"], shape["height"], shape["width"]))
    card["targets"]["vim3"] = {"nb": "vim3/network_binary.nb", "library": f"vim3/libnn_{source.name}.so",
                               "ksnn": dict(KSNN_CALL, channel_order="RGB", mean=card["preprocess"]["mean"],
                                            std=card["preprocess"]["std"])}
    (destination / "edgepad.json").write_text(json.dumps(card))
    return destination


def test_the_runtime_imports_nothing_from_the_host():
    import runtime.vim3_infer  # noqa: F401
    from runtime.backends import available_backends

    assert sys.version_info[:2] >= (3, 8)
    for heavy in ("tensorflow", "keras", "tf_keras", "click", "paramiko", "rich", "edgepad"):
        assert heavy not in sys.modules, heavy
    assert "onnxruntime" in available_backends() and "opencv" in available_backends()


def test_pipeline_on_the_astronaut(bundle, faces):
    from runtime.bundle import load_pipeline

    pipeline = load_pipeline(str(bundle))
    (face,) = pipeline.process(cv2.imread(str(faces / "astronaut.png"))).faces
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0] and left_eye[1] < nose[1] < mouth_left[1]
    assert face.score > 0.9 and 0.0 <= face.live <= 1.0


@pytest.mark.parametrize("code", [cv2.COLOR_BGR2GRAY, cv2.COLOR_BGR2BGRA])
def test_gray_and_four_channel_frames(bundle, faces, code):
    from runtime.bundle import load_pipeline
    from runtime.frames import as_frame

    image = cv2.cvtColor(cv2.imread(str(faces / "astronaut.png")), code)
    assert len(load_pipeline(str(bundle)).process(as_frame(image)).faces) == 1


def test_opencv_backend_runs_the_caffe_files_with_the_same_numbers(bundle):
    from runtime.backends import load_model

    rng = np.random.default_rng(0)
    for name, shape in (("classifier", (3, 112, 112, 3)), ("rnet", (5, 24, 24, 3)), ("pnet", (1, 61, 47, 3))):
        with_ort = load_model(bundle / "models" / name, "onnxruntime")
        with_cv = load_model(bundle / "models" / name, "opencv")
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        expected, actual = with_ort.run(x), with_cv.run(x)
        assert list(expected) == list(actual)
        for key in expected:
            np.testing.assert_allclose(actual[key], expected[key], atol=1e-4, err_msg=f"{name}/{key}")


def test_ksnn_backend_makes_exactly_ksnns_calls(bundle, tmp_path):
    import ksnn_standin

    from runtime.backends import load_model
    from runtime.backends.ksnn_backend import KsnnModel

    folder = npu_copy(bundle / "models" / "onet", tmp_path / "onet")
    ksnn_standin.StandInKSNN.calls.clear()
    ksnn_standin.StandInKSNN.library_calls.clear()
    model = KsnnModel(str(folder), api=ksnn_standin)
    batch = np.random.default_rng(1).uniform(-1, 1, (3, 48, 48, 3)).astype(np.float32)
    outputs = model.run(batch)

    calls = ksnn_standin.StandInKSNN.calls
    assert calls[0] == ("KSNN", "VIM3")
    assert calls[1] == ("nn_init", str(folder / "vim3" / "libnn_onet.so"), str(folder / "vim3" / "network_binary.nb"),
                        0)
    # the card's platform and reorder, planar float32 (C, H, W) values as Khadas' ONNX examples pass them
    assert calls[2:] == [("nn_inference", "ONNX", "2 1 0", 1, 3, ksnn_standin.output_format.OUT_FORMAT_FLOAT32,
                          (3, 48, 48), np.dtype("float32"))] * 3
    per_inference = ["NPU_GetInputTensor", "NPU_SetInput_I16", "NPU_ProcessGraph"] + \
        ["NPU_GetOutputTensor", "NPU_ConvertTensorToData_F32"] * 3
    library_calls = [c[0] for c in ksnn_standin.StandInKSNN.library_calls]
    assert library_calls == ["NPU_CreateNeuralNetwork"] + per_inference * 3
    expected = load_model(bundle / "models" / "onet", "onnxruntime").run(batch)
    assert list(outputs) == ["bbox_reg", "landmarks", "face_prob"]
    for name in expected:
        assert outputs[name].shape == expected[name].shape
        np.testing.assert_allclose(outputs[name], expected[name], atol=1e-5)


def test_ksnn_backend_errors_name_the_fix(bundle, tmp_path):
    import ksnn_standin

    from runtime.backends import BackendError
    from runtime.backends.ksnn_backend import KsnnModel

    with pytest.raises(BackendError, match="--to onnx,vim3"):
        KsnnModel(str(bundle / "models" / "rnet"), api=ksnn_standin)
    folder = npu_copy(bundle / "models" / "rnet", tmp_path / "rnet")
    card = json.loads((folder / "edgepad.json").read_text())
    card["outputs"][1]["shape"] = [1, 3]  # a card that does not match the compiled model
    (folder / "edgepad.json").write_text(json.dumps(card))
    with pytest.raises(BackendError, match="does not match"):
        KsnnModel(str(folder), api=ksnn_standin).run(np.zeros((1, 24, 24, 3), np.float32))


def test_vim3_infer_parity_on_the_npu_path(bundle, tmp_path):
    """The deploy health check's call, with --backend ksnn: models with NPU files run through KSNN, PNet falls back."""
    board = tmp_path / "bundle"
    shutil.copytree(str(bundle / "runtime"), str(board / "runtime"))
    shutil.copytree(str(bundle / "models" / "pnet"), str(board / "models" / "pnet"))
    for name in ("rnet", "onet", "classifier"):
        npu_copy(bundle / "models" / name, board / "models" / name)
    env = dict(os.environ, EDGEPAD_KSNN_API="ksnn_standin",
               PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "outputs.npz"
    completed = subprocess.run([sys.executable, str(board / "runtime" / "vim3_infer.py"), "--bundle", str(board),
                                "--backend", "ksnn", "--parity", str(bundle / "reference" / "inputs.npz"),
                                "--out", str(out)], env=env, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert "pnet runs on onnxruntime" in completed.stderr
    reference = np.load(str(bundle / "reference" / "outputs.npz"))
    actual = np.load(str(out))
    assert sorted(actual.files) == sorted(reference.files)
    for key in reference.files:
        np.testing.assert_allclose(actual[key], reference[key], atol=1e-4, err_msg=key)


def pnet_output_hw(height, width):
    """PNet's output map size: conv 3x3 valid, pool 2x2 'same', two more 3x3 valid convs."""
    return (height - 2 + 1) // 2 - 4, (width - 2 + 1) // 2 - 4


def test_detector_on_the_npu_path_with_per_size_pnet(bundle, faces, tmp_path):
    """PNet compiled once per pyramid size (the NPU's static shapes), RNet and ONet once: the same faces."""
    import ksnn_standin

    from runtime.backends import load_model
    from runtime.backends.ksnn_backend import KsnnModel
    from runtime.detector import DetectorSettings, MtcnnDetector, pyramid_sizes

    image = cv2.imread(str(faces / "astronaut.png"))
    sizes = pyramid_sizes(image.shape[0], image.shape[1], 40)
    pnet = tmp_path / "pnet"
    shutil.copytree(str(bundle / "models" / "pnet"), str(pnet))
    (pnet / "vim3").mkdir()
    entries = {}
    for h, w in sizes:
        key = f"{h}x{w}"
        (pnet / "vim3" / f"pnet_{key}.nb").write_bytes(b"VPMN" + bytes(60))
        ksnn_standin.write_placeholder_library(pnet / "vim3" / f"libnn_pnet_{key}.so", "../model.open.onnx",
                                               (1, 3, h, w))
        oh, ow = pnet_output_hw(h, w)
        entries[key] = {"nb": f"vim3/pnet_{key}.nb", "library": f"vim3/libnn_pnet_{key}.so",
                        "outputs": [{"name": "bbox_reg", "shape": [1, oh, ow, 4]},
                                    {"name": "face_prob", "shape": [1, oh, ow, 2]}]}
    card = json.loads((pnet / "edgepad.json").read_text())
    card["targets"]["vim3"] = {"ksnn": KSNN_CALL, "sizes": entries}
    (pnet / "edgepad.json").write_text(json.dumps(card))
    rnet = npu_copy(bundle / "models" / "rnet", tmp_path / "rnet")
    onet = npu_copy(bundle / "models" / "onet", tmp_path / "onet")

    ksnn_standin.StandInKSNN.calls.clear()
    on_npu = MtcnnDetector(*(KsnnModel(str(f), api=ksnn_standin) for f in (pnet, rnet, onet)), DetectorSettings(40))
    on_cpu = MtcnnDetector(*(load_model(bundle / "models" / n, "onnxruntime") for n in ("pnet", "rnet", "onet")),
                           DetectorSettings(40))
    npu_faces, cpu_faces = on_npu.detect(image), on_cpu.detect(image)
    assert len(npu_faces) == len(cpu_faces) == 1
    np.testing.assert_allclose(npu_faces[0].box, cpu_faces[0].box, atol=1e-2)
    np.testing.assert_allclose(npu_faces[0].landmarks, cpu_faces[0].landmarks, atol=1e-2)
    inits = [c for c in ksnn_standin.StandInKSNN.calls if c[0] == "nn_init"]
    assert len(inits) == len(sizes) + 2  # one NBG per pyramid size, RNet, ONet


def test_embedding_model_and_gallery(bundle, embedding_model, faces, tmp_path):
    """vim3_infer.py with models/embedding/ and --gallery: an L2-normalised embedding per face, no live score,
    the nearest enrolled person; the same embedding on onnxruntime and on OpenCV's Caffe, and by hand."""
    import onnxruntime

    from runtime.align import align_face
    from runtime.backends import load_model
    from runtime.detector import MtcnnDetector

    board = tmp_path / "bundle"
    shutil.copytree(str(bundle / "runtime"), str(board / "runtime"))
    for name in ("pnet", "rnet", "onet"):
        shutil.copytree(str(bundle / "models" / name), str(board / "models" / name))
    shutil.copytree(str(embedding_model), str(board / "models" / "embedding"))
    gallery = tmp_path / "gallery"
    (gallery / "eileen").mkdir(parents=True)
    shutil.copy(str(faces / "astronaut.png"), str(gallery / "eileen"))
    (gallery / "tom").mkdir()
    hanks = cv2.copyMakeBorder(cv2.imread(str(faces / "Tom_Hanks_54745.png")), 56, 56, 56, 56, cv2.BORDER_REPLICATE)
    cv2.imwrite(str(gallery / "tom" / "hanks.png"), hanks)

    def infer(*extra):
        completed = subprocess.run([sys.executable, str(board / "runtime" / "vim3_infer.py"), "--bundle", str(board),
                                    "--image", str(faces / "astronaut.png"), "--gallery", str(gallery), *extra],
                                   capture_output=True, text=True)
        assert completed.returncode == 0, completed.stderr
        (face,) = json.loads(completed.stdout)["faces"]
        return face

    face = infer()
    assert "live" not in face and "is_live" not in face
    embedding = np.array(face["embedding"])
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)
    assert face["identity"] == face["nearest"] == "eileen" and face["distance"] < 1e-5
    on_caffe = infer("--backend", "opencv")  # the detector runs on Caffe too: landmarks move by a few 0.01 px
    np.testing.assert_allclose(on_caffe["landmarks"], face["landmarks"], atol=0.11)
    assert on_caffe["identity"] == "eileen" and float(np.dot(on_caffe["embedding"], embedding)) > 0.9999
    assert infer("--match-threshold", "0")["identity"] is None

    image = cv2.imread(str(faces / "astronaut.png"))
    detector = MtcnnDetector(*(load_model(bundle / "models" / n, "onnxruntime") for n in ("pnet", "rnet", "onet")))
    (found,) = detector.detect(image)
    crop = cv2.cvtColor(align_face(image, found.landmarks, 112), cv2.COLOR_BGR2RGB).astype(np.float32)
    session = onnxruntime.InferenceSession(str(embedding_model / "model.onnx"))
    vector = session.run(None, {session.get_inputs()[0].name: ((crop - 127.5) / 127.5)[None]})[0][0]
    np.testing.assert_allclose(embedding, vector / np.linalg.norm(vector), atol=1e-5)
