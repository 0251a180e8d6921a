"""Bad and unusual inputs through the board command (vim3_infer) and `edgepad run`: clear output, no crash."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgepad.runtime import vim3_infer

from support.face_video import write_video


def board(capsys, *args):
    code = vim3_infer.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_json_line(out: str) -> dict:
    lines = out.strip().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


@pytest.mark.parametrize("content, suffix, message", [
    (None, ".jpg", "no such file"),
    (b"", ".jpg", "empty"),
    (b"this is not a picture", ".jpg", "not a readable image"),
    (b"", ".mp4", "empty"),
    (b"\x00\x01garbage" * 50, ".mp4", "not a readable video"),
])
def test_unreadable_inputs_fail_with_one_line(tmp_path, capsys, runtime_bundle, content, suffix, message):
    path = tmp_path / f"input{suffix}"
    if content is not None:
        path.write_bytes(content)
    option = "--image" if suffix == ".jpg" else "--video"
    code, out, err = board(capsys, "--bundle", runtime_bundle, option, path)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err and str(path) in err


def test_missing_bundle_fails_with_one_line(tmp_path, capsys, faces_dir):
    code, out, err = board(capsys, "--bundle", tmp_path / "nothing", "--image", faces_dir / "t1.jpg")
    assert code == 1 and out == "" and "no such folder" in err


@pytest.mark.parametrize("image", [
    np.full((300, 400, 3), 128, np.uint8),  # flat gray
    np.tile(np.linspace(0, 255, 400, dtype=np.uint8)[None, :, None], (300, 1, 3)),  # gradient
    np.zeros((5, 7, 3), np.uint8),  # smaller than PNet's window
], ids=["flat", "gradient", "tiny"])
def test_no_face_gives_an_empty_list(tmp_path, capsys, runtime_bundle, image):
    path = tmp_path / "noface.png"
    cv2.imwrite(str(path), image)
    code, out, _ = board(capsys, "--bundle", runtime_bundle, "--image", path)
    assert code == 0 and one_json_line(out)["faces"] == []


@pytest.mark.parametrize("convert", ["gray", "bgra"])
def test_grayscale_and_four_channel_images(tmp_path, capsys, runtime_bundle, astronaut_image, convert):
    image = cv2.cvtColor(astronaut_image, cv2.COLOR_BGR2GRAY if convert == "gray" else cv2.COLOR_BGR2BGRA)
    path = tmp_path / f"astronaut_{convert}.png"
    cv2.imwrite(str(path), image)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).ndim == (2 if convert == "gray" else 3)
    code, out, _ = board(capsys, "--bundle", runtime_bundle, "--image", path)
    faces = one_json_line(out)["faces"]
    assert code == 0 and len(faces) == 1 and 0.0 <= faces[0]["live"] <= 1.0


def test_face_cut_by_the_image_border(tmp_path, capsys, runtime_bundle, astronaut_image):
    cut = astronaut_image[:, 215:]  # the astronaut's face spans x 180..265: a third of it is cut away
    path = tmp_path / "cut.png"
    cv2.imwrite(str(path), cut)
    code, out, _ = board(capsys, "--bundle", runtime_bundle, "--image", path)
    assert code == 0
    for face in one_json_line(out)["faces"]:
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 < x2 <= cut.shape[1] - 1 and 0 <= y1 < y2 <= cut.shape[0] - 1
        assert face["live"] is not None


def test_video_with_frames_gives_one_json_line_per_frame(tmp_path, capsys, runtime_bundle, astronaut_image):
    video = write_video([astronaut_image] * 4, tmp_path / "still.avi")
    code, out, _ = board(capsys, "--bundle", runtime_bundle, "--video", video)
    frames = [json.loads(line) for line in out.strip().splitlines()]
    assert code == 0 and [f["frame"] for f in frames] == [0, 1, 2, 3]
    assert all(len(f["faces"]) == 1 and f["faces"][0]["track"] == 1 for f in frames)


# -- edgepad run ------------------------------------------------------------------------------------------------
@pytest.fixture()
def host_cache(tmp_path, monkeypatch, detector_models):
    """EDGEPAD_HOME whose model cache already holds the detector (so `edgepad run` does not rebuild it)."""
    from edgepad.convert.mtcnn_models import default_cache_dir

    monkeypatch.setenv("EDGEPAD_HOME", str(tmp_path / "home"))
    cache = default_cache_dir()
    cache.parent.mkdir(parents=True)
    cache.symlink_to(detector_models, target_is_directory=True)
    monkeypatch.setenv("EDGEPAD_HOME", str(tmp_path / "home"))
    return cache


def edgepad(*args):
    from edgepad.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def test_edgepad_run_json_shape(runtime_bundle, faces_dir, tmp_path):
    result = edgepad("run", faces_dir / "t1.jpg", "--bundle", runtime_bundle, "--json", "--repeat", "3",
                     "--draw", tmp_path / "faces.png")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"faces", "timings_ms", "backends"} and len(data["faces"]) == 6
    assert data["backends"] == {"pnet": "onnxruntime", "rnet": "onnxruntime", "onet": "onnxruntime",
                                "classifier": "onnxruntime"}  # the bundle has no NPU files
    assert result.stderr.count("no NPU files") == 1
    assert set(data["timings_ms"]) == {"detect", "align", "classify", "total"}
    for face in data["faces"]:
        assert len(face["box"]) == 4 and np.shape(face["landmarks"]) == (5, 2)
        assert 0 <= face["live"] <= 1 and face["track"] is None and 0.7 < face["score"] <= 1
    drawn = cv2.imread(str(tmp_path / "faces.png"))
    assert drawn is not None and drawn.shape == cv2.imread(str(faces_dir / "t1.jpg")).shape


def test_edgepad_run_without_bundle_detects_only(host_cache, faces_dir):
    result = edgepad("run", faces_dir / "astronaut.png", "--json")
    assert result.exit_code == 0, result.output
    (face,) = json.loads(result.stdout)["faces"]
    assert face["live"] is None


def test_edgepad_run_table(runtime_bundle, faces_dir):
    result = edgepad("run", faces_dir / "astronaut.png", "--bundle", runtime_bundle)
    assert result.exit_code == 0 and "1 face(s)" in result.stdout


def test_edgepad_run_unreadable_image_is_one_line(tmp_path, runtime_bundle):
    bad = tmp_path / "bad.png"
    bad.write_text("no image here")
    result = edgepad("run", bad, "--bundle", runtime_bundle)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: {bad}: not a readable image (OpenCV cannot decode it); give "
                               "a JPEG or PNG image"]


def test_edgepad_run_on_a_video_tracks_faces(runtime_bundle, astronaut_image, tmp_path):
    video = write_video([astronaut_image] * 5, tmp_path / "clip.avi")
    result = edgepad("run", video, "--bundle", runtime_bundle, "--json", "--max-frames", "3")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [f["frame"] for f in data["frames"]] == [0, 1, 2]
    assert all([face["track"] for face in f["faces"]] == [1] for f in data["frames"])
    assert "track" in data["timings_ms"] and "total" in data["timings_ms"]
