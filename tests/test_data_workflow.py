"""The seed's data workflow end to end on a tiny SiW-layout dataset made from real face photos:
extract (with every .face defect, resume and 2 workers), train a MobileNet for two epochs, convert it, evaluate it."""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgepad.cli import cli

from support.siw_dataset import build_siw_dataset

FRAMES = 10
VIDEOS = 24
# Sorted by path, Test/ comes before Train/: the first 12 videos are the Test split.
TEST_VIDEOS = 12
ARCFACE_EYES = np.array([[38.2946, 51.6963], [73.5318, 51.5014]])


def run(*args: str):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def run_json(*args: str) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def read_summary(out) -> dict[str, dict]:
    with open(out / "summary.csv", newline="") as f:
        return {row["video"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="session")
def siw_root(tmp_path_factory, faces_dir):
    return build_siw_dataset(tmp_path_factory.mktemp("siw"), faces_dir, frames_per_video=FRAMES)


@pytest.fixture(scope="session")
def extraction(siw_root, tmp_path_factory):
    """Extract in two runs: the Test split with 2 workers, then the rest after a simulated interruption."""
    out = tmp_path_factory.mktemp("crops")
    first = run_json("extract", siw_root.root, "-o", out, "--workers", 2, "--end", TEST_VIDEOS, "--keep-original")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*.png")}
    # An interrupted video: crops written, no done marker.
    interrupted = out / "Train" / "live" / "001" / "001-1-1-1-1"
    interrupted.mkdir(parents=True)
    (interrupted / "99999.png").write_bytes(b"half-written")
    second = run_json("extract", siw_root.root, "-o", out, "--keep-original")
    third = run_json("extract", siw_root.root, "-o", out)
    return {"out": out, "first": first, "second": second, "third": third, "before": before}


def test_first_run_extracts_its_range_in_parallel(extraction):
    first = extraction["first"]
    assert (first["processed"], first["skipped"], first["videos"]) == (TEST_VIDEOS, 0, TEST_VIDEOS)
    assert first["totals"]["frames"] == TEST_VIDEOS * FRAMES


def test_resume_skips_finished_videos_and_keeps_their_files(extraction):
    second, third = extraction["second"], extraction["third"]
    assert (second["processed"], second["skipped"], second["videos"]) == (VIDEOS - TEST_VIDEOS, TEST_VIDEOS, VIDEOS)
    assert (third["processed"], third["skipped"]) == (0, VIDEOS)
    for path, (mtime, content) in extraction["before"].items():
        assert path.stat().st_mtime_ns == mtime and path.read_bytes() == content, f"{path} was rewritten"
    # the interrupted video was redone from scratch
    redone = extraction["out"] / "Train" / "live" / "001" / "001-1-1-1-1"
    assert not (redone / "99999.png").exists()
    assert (redone / ".done.json").is_file()


def test_every_defect_is_counted_not_fatal(extraction, siw_root):
    rows = read_summary(extraction["out"])
    assert len(rows) == VIDEOS
    assert rows[siw_root.bad_line_video]["bad_lines"] == "1"
    assert rows[siw_root.zero_box_video]["zero_boxes"] == "1"
    assert rows[siw_root.short_face_video]["frames_without_line"] == str(siw_root.short_face_missing)
    assert rows[siw_root.m_mov_video]["m_mov"] == "1"  # found its .face without the `.m`, named without it
    assert rows[siw_root.m_mov_video]["boxes"] == str(FRAMES)
    unreadable = rows[siw_root.unreadable_video]
    assert (unreadable["unreadable"], unreadable["frames"], unreadable["faces_aligned"]) == ("1", "0", "0")
    # frames whose box was unusable took the previous frame's box
    assert rows[siw_root.bad_line_video]["borrowed_boxes"] == "1"
    assert rows[siw_root.short_face_video]["borrowed_boxes"] == str(siw_root.short_face_missing)
    totals = extraction["third"]["totals"]
    assert (totals["bad_lines"], totals["zero_boxes"], totals["m_mov"], totals["unreadable"]) == (1, 1, 1, 1)


def test_summary_matches_the_files_written(extraction):
    out = extraction["out"]
    for video, row in read_summary(out).items():
        folder = out / row["split"] / row["label"] / row["subject"] / video
        crops = sorted(folder.glob("*.png"))
        assert len(crops) == int(row["faces_aligned"])
        assert int(row["frames_lost"]) == int(row["frames"]) - int(row["faces_aligned"])
        if row["unreadable"] == "0":
            assert int(row["frames"]) == FRAMES
            # MTCNN re-finds the face in nearly every frame, attacks included
            assert int(row["faces_aligned"]) >= FRAMES - 2, row
        originals = list((out / "original" / row["split"] / row["label"] / row["subject"] / video).glob("*.png"))
        expected_originals = int(row["frames"]) - int(row["no_box"])
        assert len(originals) == expected_originals if int(row["frames"]) else not originals


def test_crops_are_aligned_faces(extraction):
    """The reference MTCNN (the `mtcnn` package) finds the eyes of each crop where the ArcFace template puts them."""
    from mtcnn import MTCNN

    detector = MTCNN()
    crops = sorted(extraction["out"].glob("T*/*/*/*/00005.png"))[::3]
    assert len(crops) >= 6
    errors = []
    for path in crops:
        crop = cv2.imread(str(path))
        assert crop.shape == (112, 112, 3)
        faces = detector.detect_faces(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), min_face_size=20)
        assert faces, f"no face in {path}"
        eyes = np.array([faces[0]["keypoints"]["left_eye"], faces[0]["keypoints"]["right_eye"]], float)
        # a five-point least-squares fit on blurred or moiré'd faces: each eye within a few pixels
        assert np.abs(eyes - ARCFACE_EYES).max() < 9, f"{path}: eyes at {eyes.tolist()}"
        errors.append(np.linalg.norm(eyes - ARCFACE_EYES, axis=1).mean())
    assert np.mean(errors) < 4, errors


def test_overview_names_the_videos_that_lost_most(siw_root, tmp_path):
    # Without borrowed boxes the defective lines lose their frames; videos 12..16 are Train live 001-004, print 001.
    result = run("extract", siw_root.root, "-o", tmp_path / "out", "--start", 12, "--end", 17, "--no-borrow-boxes")
    assert result.exit_code == 0, result.output
    assert "videos with the most lost frames" in result.stdout
    table = result.stdout[result.stdout.index("videos with the most lost frames"):]
    assert table.index(siw_root.short_face_video) < table.index(siw_root.bad_line_video)
    assert siw_root.zero_box_video in table
    rows = read_summary(tmp_path / "out")
    assert set(rows) == {"001-1-1-1-1", "002-1-1-1-1", "003-1-1-1-1", "004-1-1-1-1", "001-1-2-1-1"}
    assert rows[siw_root.short_face_video]["no_box"] == str(siw_root.short_face_missing)
    assert "MB on disk" in result.stdout


def test_extract_errors_are_one_line(tmp_path):
    result = run("extract", tmp_path / "missing", "-o", tmp_path / "out")
    assert result.exit_code != 0
    assert result.output.strip().startswith("error:") and len(result.output.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    result = run("extract", tmp_path / "empty", "-o", tmp_path / "out")
    assert "no Train/ or Test/" in result.output and result.exit_code != 0
    result = run("extract", tmp_path / "empty", "-o", tmp_path / "out", "--workers", 0)
    assert "--workers 0" in result.output and result.exit_code != 0


@pytest.fixture(scope="session")
def trained(extraction, tmp_path_factory):
    model = tmp_path_factory.mktemp("model") / "pad.h5"
    report = run_json("train", extraction["out"], "-o", model, "--epochs", 2, "--batch-size", 16, "--alpha", 0.25)
    return model, report


def test_train_writes_the_seed_classifier(trained):
    import keras

    model_path, report = trained
    assert report["epochs_run"] == 2 and report["monitor"] == "val_loss"
    assert report["batchnorm_batches"] >= 1
    # whole subjects are held out: 1 of the 4 Train subjects (each 1 live, 2 spoof videos, one unreadable)
    assert set(report["train_images"]) == {"live", "spoof"} and set(report["val_images"]) == {"live", "spoof"}
    model = keras.models.load_model(model_path, compile=False)
    assert tuple(model.input_shape) == (None, 112, 112, 3)
    assert model.layers[-1].name == "pad_prob" and model.layers[-1].get_config()["activation"] == "softmax"
    assert model.get_layer("conv1").filters == 8  # MobileNet's 32 filters at alpha 0.25
    assert not list(model_path.parent.glob(".*partial*"))
    probabilities = model.predict(np.zeros((1, 112, 112, 3), np.float32), verbose=0)
    assert probabilities.shape == (1, 2) and abs(probabilities.sum() - 1) < 1e-5


def test_train_refuses_to_overwrite(trained):
    model_path, _ = trained
    result = run("train", model_path.parent, "-o", model_path)
    assert result.exit_code != 0 and "--force" in result.output


@pytest.fixture(scope="session")
def converted(trained, tmp_path_factory):
    model_path, _ = trained
    out = tmp_path_factory.mktemp("converted") / "pad_out"
    report = run_json("convert", model_path, "-o", out, "--to", "onnx,caffe")
    return out, report


def test_trained_model_converts(converted):
    out, report = converted
    assert report["onnx"]["passed"] and report["caffe"]["passed"]
    card = json.loads((out / "edgepad.json").read_text())
    assert card["labels"] == ["live", "spoof"] and card["preprocess"]["mean"] == [127.5] * 3


def test_evaluate_keras_and_onnx_agree(trained, converted, extraction, tmp_path):
    from edgepad.convert.parity import FLOAT32_ATOL
    from edgepad.data.evaluate import EvaluateOptions, evaluate_model

    model_path, _ = trained
    out = extraction["out"]
    plot = tmp_path / "det.png"
    keras_json = run_json("evaluate", model_path, out, "--dev", out / "Train", "--plot", plot)
    assert keras_json["counts"] == {"live": 40, "print": 40, "replay": 40}
    assert keras_json["threshold_source"].startswith("EER on")
    image = cv2.imread(str(plot))
    assert image is not None and image.shape == (640, 640, 3)

    keras_result = evaluate_model(EvaluateOptions(model_path, out, "keras", threshold=keras_json["threshold"]))
    onnx_result = evaluate_model(EvaluateOptions(converted[0], out, "onnx", threshold=keras_json["threshold"]))
    np.testing.assert_allclose(onnx_result.scores, keras_result.scores, atol=FLOAT32_ATOL)
    # the reported rates are the counts of scores on the wrong side of the threshold
    scores, types, t = np.array(keras_result.scores), np.array(keras_result.types), keras_json["threshold"]
    assert keras_json["apcer_per_type"]["print"] == pytest.approx(np.mean(scores[types == "print"] < t))
    assert keras_json["apcer_per_type"]["replay"] == pytest.approx(np.mean(scores[types == "replay"] < t))
    assert keras_json["bpcer"] == pytest.approx(np.mean(scores[types == "live"] >= t))
    assert keras_json["acer"] == pytest.approx((max(keras_json["apcer_per_type"].values()) + keras_json["bpcer"]) / 2)


def test_evaluate_per_video(trained, extraction):
    model_path, _ = trained
    report = run_json("evaluate", trained[0], extraction["out"], "--unit", "video", "--threshold", 0.5)
    assert report["counts"] == {"live": 4, "print": 4, "replay": 4}
    assert report["threshold"] == 0.5 and report["threshold_source"] == "given"


def test_evaluate_errors_are_one_line(trained, converted, extraction, tmp_path):
    import shutil

    model_path, _ = trained
    onnx_only = tmp_path / "onnx_only"
    shutil.copytree(converted[0], onnx_only)
    card = json.loads((onnx_only / "edgepad.json").read_text())
    del card["targets"]["caffe"]
    (onnx_only / "edgepad.json").write_text(json.dumps(card))
    shutil.copytree(extraction["out"] / "Train" / "live", tmp_path / "only_live" / "live")
    for args, expected in [
        ((converted[0], extraction["out"], "--stage", "keras"), "give the .h5 file"),
        ((model_path, extraction["out"], "--stage", "onnx"), "not an `edgepad convert` output folder"),
        ((model_path, extraction["out"], "--threshold", 0.5, "--dev", extraction["out"]), "give one"),
        ((onnx_only, extraction["out"], "--stage", "caffe"), "--to caffe"),
        ((model_path, tmp_path / "only_live", "--threshold", 0.5), "only bona fide"),
    ]:
        result = run("evaluate", *args)
        assert result.exit_code != 0, args
        assert expected in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_evaluate_stages_give_the_same_scores(trained, converted, extraction):
    from edgepad.convert.parity import FLOAT32_ATOL
    from edgepad.data.evaluate import EvaluateOptions, evaluate_model

    h5, out = trained[0], converted[0]
    results = {stage: evaluate_model(EvaluateOptions(h5 if stage == "keras" else out, extraction["out"], stage,
                                                     dev_data=extraction["out"] / "Train"))
               for stage in ("keras", "onnx", "caffe")}
    keras_scores = np.array(results["keras"].scores)
    # the comparison means something: with its batch-norm statistics recomputed, even a two-epoch model
    # scores faces differently (with Keras' running averages it scored every face the same)
    assert keras_scores.std() > 1e-3
    for stage in ("onnx", "caffe"):
        np.testing.assert_allclose(results[stage].scores, keras_scores, atol=FLOAT32_ATOL, err_msg=stage)
        assert results[stage].metrics.threshold == pytest.approx(results["keras"].metrics.threshold, abs=FLOAT32_ATOL)
        assert results[stage].metrics.acer == results["keras"].metrics.acer


def test_evaluate_vim3_emulated_is_clear_when_missing(converted, extraction):
    out = converted[0]
    result = run("evaluate", out, extraction["out"], "--stage", "vim3-emulated")
    assert result.exit_code != 0
    assert "vim3" in result.output and len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.board
def test_evaluate_on_the_board_matches_the_host(converted, extraction, board, tmp_path):
    """The converted classifier deployed to a board (loopback OpenSSH, the board's Python 3.8 environment) gives
    the same scores there, through the runtime's --parity entry point, as onnxruntime on the host."""
    import shutil

    from edgepad.convert.parity import FLOAT32_ATOL
    from edgepad.data.board_scorer import BoardTarget
    from edgepad.data.evaluate import EvaluateOptions, evaluate_model
    from edgepad.deploy.bundle import BundleOptions, build_bundle

    model_dir, out = converted[0], extraction["out"]
    build_bundle(BundleOptions(tmp_path / "bundle", model_dir))
    assert board.deploy(tmp_path / "bundle").passed

    target = BoardTarget(f"root@127.0.0.1:{board.sshd.port}", board.board_options(), "onnxruntime")
    on_board = evaluate_model(EvaluateOptions(model_dir, out, "board", threshold=0.5, board=target))
    on_host = evaluate_model(EvaluateOptions(model_dir, out, "onnx", threshold=0.5))
    np.testing.assert_allclose(on_board.scores, on_host.scores, atol=FLOAT32_ATOL)
    assert on_board.metrics == on_host.metrics
    assert not list(board.remote_dir.glob(".evaluate-*")), "scratch files left on the board"

    report = run_json("evaluate", model_dir, out, "--stage", "board", *board.cli_args(), "--threshold", 0.5)
    assert report["acer"] == on_host.metrics.acer and report["stage"] == "board"

    other = tmp_path / "other_model"
    shutil.copytree(model_dir, other)
    card = json.loads((other / "edgepad.json").read_text())
    card["sha256"]["model.onnx"] = "0" * 64
    (other / "edgepad.json").write_text(json.dumps(card))
    result = run("evaluate", other, out, "--stage", "board", *board.cli_args(), "--threshold", 0.5)
    assert result.exit_code != 0 and "runs another classifier" in result.output
    result = run("evaluate", model_dir, out, "--stage", "board", "--threshold", 0.5)
    assert result.exit_code != 0 and "--host" in result.output


def test_large_faces_are_detected_on_a_shrunk_copy(faces_dir, tmp_path):
    """SiW's faces are ~300 px: detection runs on a copy shrunk to a 120 px box, alignment on the full crop."""
    from mtcnn import MTCNN

    dataset = build_siw_dataset(tmp_path / "siw", faces_dir, frames_per_video=5, subjects=2, frame_size=600,
                                face_width=300)
    report = run_json("extract", dataset.root, "-o", tmp_path / "out")
    readable = [row for row in read_summary(tmp_path / "out").values() if row["unreadable"] == "0"]
    assert all(row["faces_aligned"] == row["frames"] == "5" for row in readable), readable
    assert report["totals"]["faces_aligned"] == 5 * len(readable)
    detector = MTCNN()
    for path in sorted((tmp_path / "out").glob("Train/live/*/*/*.png")):
        faces = detector.detect_faces(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), min_face_size=20)
        eyes = np.array([faces[0]["keypoints"]["left_eye"], faces[0]["keypoints"]["right_eye"]], float)
        assert np.abs(eyes - ARCFACE_EYES).max() < 6, f"{path}: eyes at {eyes.tolist()}"


@pytest.mark.toolkit
def test_evaluate_the_npu_model_in_the_emulator(trained, extraction, tmp_path, toolkit):
    """The classifier compiled for the VIM3 (int16) and run by its NPU library in VeriSilicon's emulator, through
    the runtime's ksnn backend: PAD scores within the quantization tolerance of the float ONNX model."""
    import shutil

    from edgepad.convert.parity import QUANTIZED_SCORE_ATOL
    from edgepad.data.evaluate import EvaluateOptions, evaluate_model
    out = extraction["out"]
    calibration = tmp_path / "calibration"  # one crop of every Train video: varied, unlike the first 32 of one video
    calibration.mkdir()
    for crop in sorted(out.glob("Train/*/*/*/00004.png")):
        shutil.copy(crop, calibration / f"{crop.parent.name}.png")
    report = run_json("convert", trained[0], "-o", tmp_path / "npu", "--to", "onnx,vim3", "--quantize", "int16",
                      "--calibration", calibration)
    assert report["vim3"]["passed"]
    # the emulator takes about a second per face: one crop of each Test video
    few = tmp_path / "few"
    for crop in sorted(out.glob("Test/*/*/*/00002.png")):
        target = few / crop.relative_to(out / "Test")
        target.parent.mkdir(parents=True)
        shutil.copy(crop, target)
    emulated = evaluate_model(EvaluateOptions(tmp_path / "npu", few, "vim3-emulated", threshold=0.5))
    float_onnx = evaluate_model(EvaluateOptions(tmp_path / "npu", few, "onnx", threshold=0.5))
    assert emulated.metrics.counts == {"live": 4, "print": 4, "replay": 4}
    np.testing.assert_allclose(emulated.scores, float_onnx.scores, atol=QUANTIZED_SCORE_ATOL)
    assert not np.array_equal(emulated.scores, float_onnx.scores)  # it really ran the quantized model
