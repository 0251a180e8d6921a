"""Face embeddings: verification figures by hand, insightface's .bin sets, the same pairs through Keras
(TensorFlow), ONNX (onnxruntime) and Caffe (OpenCV), and the runtime's embeddings and gallery on the host."""
from __future__ import annotations

import json
import pickle
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgepad.cli import cli
from edgepad.data.pairs import read_bin
from edgepad.data.verification import fold_ranges, verification_metrics

from support.embedding_faces import NO_FACE, build_lfw_pairs, converted_embedding_dir
from support.paths import FACES


def run_json(*args) -> dict:
    result = CliRunner().invoke(cli, [str(a) for a in args] + ["--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- metrics, by hand --------------------------------------------------------------------------------------------
# pair:        0     1     2     3     4     5     6     7
DISTANCES = [0.2, 0.6, 0.5, 1.1, None, 0.9, 0.4, 1.3]
SAME = [True, True, False, False, True, False, True, False]


def test_best_threshold_and_accuracy_by_hand():
    # Thresholds tried: 0.2-e, 0.3, 0.45, 0.55, 0.75, 1.0, 1.2, 1.3+e. Pair 4 (no face) is wrong at every one.
    # At 0.45: same 0.2, 0.4 accepted (0.6 not), all four different pairs rejected: 6 of 8 right.
    # At 0.75 also 6 of 8 (0.5 accepted wrongly, 0.6 rightly): the smaller threshold wins.
    m = verification_metrics(DISTANCES, SAME, folds=2)
    assert m.threshold == pytest.approx(0.45) and m.accuracy == pytest.approx(6 / 8)
    assert m.failures == 1
    assert m.positive == pytest.approx({"count": 3, "mean": 0.4, "std": np.sqrt(0.08 / 3)})
    assert m.negative == pytest.approx({"count": 4, "mean": 0.95, "std": np.std([0.5, 0.9, 1.1, 1.3])})


def test_kfold_thresholds_come_from_the_other_folds_by_hand():
    # Fold 0 = pairs 0-3, judged at the best threshold of pairs 4-7 (0.4 T, 0.9 F, 1.3 F, missing T): 0.65,
    # where 0.2 T, 0.6 T, 1.1 F are right and 0.5 F is accepted: 3/4.
    # Fold 1 = pairs 4-7, judged at the best of pairs 0-3: 0.35 and 0.85 both get 3/4, the smaller wins;
    # there the missing pair and 0.4 T are wrong: 2/4.
    m = verification_metrics(DISTANCES, SAME, folds=2)
    assert [f["pairs"] for f in m.folds] == [[0, 4], [4, 8]]
    assert [f["threshold"] for f in m.folds] == pytest.approx([0.65, 0.35])
    assert [f["accuracy"] for f in m.folds] == [0.75, 0.5]
    assert m.kfold_accuracy == pytest.approx(0.625) and m.kfold_std == pytest.approx(0.125)


def test_tar_far_and_auc_by_hand():
    # TAR/FAR count a pair without a face as rejected (ISO/IEC 19795-1 generalised rates). With 4 different
    # pairs no false accept is allowed at FAR 1e-2 or 1e-3: threshold = the closest different pair, 0.5;
    # accepted same pairs there: 0.2 and 0.4 of 4.
    m = verification_metrics(DISTANCES, SAME, folds=2)
    for point in m.tar_at_far:
        assert point["threshold"] == 0.5 and point["tar"] == 0.5 and point["far"] == 0.0
    # Same pairs closer than different ones: 0.2 -> 4, 0.6 -> 3, 0.4 -> 4, missing -> 0, of 16.
    assert m.auc == pytest.approx(11 / 16)


def test_tar_at_far_allows_the_share_of_false_accepts():
    rng = np.random.default_rng(0)
    negatives = rng.uniform(1.0, 2.0, 1000)
    positives = np.linspace(0.5, 1.5, 100)
    m = verification_metrics(list(positives) + list(negatives), [True] * 100 + [False] * 1000, folds=10)
    low, high = m.tar_at_far
    ordered = np.sort(negatives)
    assert low["threshold"] == ordered[1] and low["far"] == 1 / 1000  # one false accept of 1000 allowed
    assert high["threshold"] == ordered[10] and high["far"] == 10 / 1000
    assert low["tar"] == np.mean(positives < ordered[1]) and high["tar"] == np.mean(positives < ordered[10])


def test_folds_are_contiguous_like_sklearn_kfold():
    assert fold_ranges(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert fold_ranges(6000, 10)[0] == (0, 600)


def test_metrics_need_both_kinds_of_pairs():
    with pytest.raises(ValueError, match="only same pairs"):
        verification_metrics([0.1, 0.2], [True, True], folds=2)


# -- insightface .bin ----------------------------------------------------------------------------------------------
def aligned_faces() -> list[np.ndarray]:
    hanks = cv2.imread(str(FACES / "Tom_Hanks_54745.png"))
    astronaut = cv2.imread(str(FACES / "astronaut.png"))[60:172, 180:292]
    return [hanks, cv2.flip(hanks, 1), cv2.convertScaleAbs(hanks, alpha=0.8), astronaut]


def write_bin(path, images, same):
    encoded = [cv2.imencode(".png", image)[1].tobytes() for image in images]
    with open(path, "wb") as f:
        pickle.dump((encoded, same), f, protocol=pickle.HIGHEST_PROTOCOL)


def test_bin_reader_gives_consecutive_pairs_and_the_images(tmp_path):
    images = aligned_faces()
    write_bin(tmp_path / "tiny.bin", images, [True, False])
    pair_set = read_bin(tmp_path / "tiny.bin")
    assert [p.to_json() for p in pair_set.pairs] == [{"a": "tiny.bin#0", "b": "tiny.bin#1", "same": True},
                                                     {"a": "tiny.bin#2", "b": "tiny.bin#3", "same": False}]
    assert pair_set.aligned
    for key, image in zip(pair_set.keys(), images, strict=True):
        np.testing.assert_array_equal(pair_set.load(key), image)


def test_bin_with_a_wrong_image_count_is_refused_in_one_line(tmp_path):
    write_bin(tmp_path / "bad.bin", aligned_faces()[:3], [True, False])
    result = CliRunner().invoke(cli, ["evaluate", str(tmp_path), str(tmp_path / "bad.bin")])
    assert result.exit_code != 0 and "3 images for 2 pairs" in result.output and "Traceback" not in result.output


# -- the same pairs on every stage -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def embedding_model():
    return converted_embedding_dir()


@pytest.fixture(scope="session")
def lfw(tmp_path_factory):
    from edgepad.data.faces import DetectorSettings, make_detector

    from support.runtime_models import detector_models_dir

    detector = make_detector(DetectorSettings(), str(detector_models_dir()))
    return build_lfw_pairs(tmp_path_factory.mktemp("lfw") / "lfw", detector)


@pytest.fixture(scope="session")
def stages(embedding_model, lfw):
    dataset, pairs = lfw
    keras_h5 = embedding_model / "keras" / "mobilefacenet_arcface.h5"
    layers_py = embedding_model / "keras" / "norm_dense_layers.py"
    out = {"keras": run_json("evaluate", keras_h5, dataset, "--pairs", pairs, "--stage", "keras", "--folds", 4,
                             "--custom-objects", layers_py, "--output-layer", "embedding")}
    for stage in ("onnx", "caffe"):
        out[stage] = run_json("evaluate", embedding_model / "emb_out", dataset, "--pairs", pairs, "--stage", stage,
                              "--folds", 4)
    return out


def test_pairs_come_in_file_order_with_a_null_for_a_missing_face(stages, lfw):
    dataset, pairs = lfw
    lines = [line.split() for line in pairs.read_text().splitlines()[1:]]
    for result in stages.values():
        assert len(result["pairs"]) == len(result["distances"]) == len(lines)
        for pair, fields in zip(result["pairs"], lines, strict=True):
            names = (fields[0], fields[0]) if len(fields) == 3 else (fields[0], fields[2])
            assert pair["same"] == (len(fields) == 3)
            assert [p.split("/")[-2] for p in (pair["a"], pair["b"])] == list(names)
        missing = [i for i, d in enumerate(result["distances"]) if d is None]
        assert [result["pairs"][i]["a"].split("/")[-2] for i in missing] == [NO_FACE]
        assert result["failures"] == 1 and result["faces_not_found"][0].endswith(f"{NO_FACE}_0001.jpg")


def test_accuracy_follows_from_the_distances_and_the_threshold(stages):
    for stage, result in stages.items():
        right = [d is not None and (d < result["threshold"]) == p["same"]
                 for d, p in zip(result["distances"], result["pairs"], strict=True)]
        assert result["accuracy"] == pytest.approx(np.mean(right)), stage
        for fold in result["kfold"]["folds"]:
            start, end = fold["pairs"]
            fold_right = [d is not None and (d < fold["threshold"]) == p["same"]
                          for d, p in zip(result["distances"][start:end], result["pairs"][start:end], strict=True)]
            assert fold["accuracy"] == pytest.approx(np.mean(fold_right)), stage
        assert "L2-normalised" in result["note"] and 0.5 < result["accuracy"] <= 1.0


def test_keras_onnx_and_caffe_give_the_same_distances(stages):
    reference = np.array([np.nan if d is None else d for d in stages["keras"]["distances"]])
    for stage in ("onnx", "caffe"):
        distances = np.array([np.nan if d is None else d for d in stages[stage]["distances"]])
        np.testing.assert_array_equal(np.isnan(distances), np.isnan(reference))
        np.testing.assert_allclose(distances, reference, atol=1e-4, equal_nan=True, err_msg=stage)
        assert stages[stage]["accuracy"] == stages["keras"]["accuracy"], stage
        assert stages[stage]["kfold"]["accuracy"] == stages["keras"]["kfold"]["accuracy"], stage


def test_the_embedding_model_on_the_npu_keeps_the_pairs_decisions(toolkit, embedding_model, stages, lfw, tmp_path):
    """An embedding's values are far from unit size (float32 runtimes differ by ~2e-4 on them): the toolkit's float
    import is judged relative to that size, so the model reaches the NPU at all; then int16 on the emulator gives
    the pairs Keras' distances and decisions."""
    from support.calibration_faces import calibration_faces_dir

    dataset, pairs = lfw
    keras_dir = embedding_model / "keras"
    out = tmp_path / "emb_vim3"
    result = CliRunner().invoke(cli, [
        "convert", str(keras_dir / "mobilefacenet_arcface.h5"),
        "--custom-objects", str(keras_dir / "norm_dense_layers.py"),
        "--output-layer", "embedding", "-o", str(out), "--to", "onnx,vim3", "--quantize", "int16",
        "--calibration", str(calibration_faces_dir(FACES)), "--mean", "127.5", "--std", "127.5"])
    assert result.exit_code == 0, result.output
    npu = run_json("evaluate", out, dataset, "--pairs", pairs, "--stage", "vim3-emulated", "--folds", 4)
    reference = np.array([np.nan if d is None else d for d in stages["keras"]["distances"]])
    distances = np.array([np.nan if d is None else d for d in npu["distances"]])
    np.testing.assert_allclose(distances, reference, atol=0.02, equal_nan=True)
    assert npu["accuracy"] == stages["keras"]["accuracy"]


def test_a_bin_set_on_onnx_matches_onnxruntime_by_hand(embedding_model, tmp_path):
    import onnxruntime

    images = aligned_faces()
    write_bin(tmp_path / "tiny.bin", images, [True, False])
    result = run_json("evaluate", embedding_model / "emb_out", tmp_path / "tiny.bin", "--stage", "onnx", "--folds", 2)
    assert result["alignment"].startswith("given")
    session = onnxruntime.InferenceSession(str(embedding_model / "emb_out" / "model.onnx"))
    rgb = [(cv2.cvtColor(cv2.resize(i, (112, 112)), cv2.COLOR_BGR2RGB).astype(np.float32) - 127.5) / 127.5
           for i in images]
    vectors = [session.run(None, {session.get_inputs()[0].name: x[None]})[0][0] for x in rgb]
    vectors = [v / np.linalg.norm(v) for v in vectors]
    expected = [np.linalg.norm(vectors[0] - vectors[1]), np.linalg.norm(vectors[2] - vectors[3])]
    np.testing.assert_allclose(result["distances"], expected, atol=1e-5)
    cosine = run_json("evaluate", embedding_model / "emb_out", tmp_path / "tiny.bin", "--stage", "onnx",
                      "--folds", 2, "--metric", "cosine")
    np.testing.assert_allclose(cosine["distances"], [1 - vectors[0] @ vectors[1], 1 - vectors[2] @ vectors[3]],
                               atol=1e-5)


def test_verification_errors_are_one_line(embedding_model, lfw, tmp_path):
    dataset, pairs = lfw
    bad = tmp_path / "pairs.txt"
    bad.write_text("1\t1\nTom_Hanks\t1\n")
    for args, message in [
        (["--pairs", bad], f"{bad}:2"),
        (["--pairs", pairs, "--stage", "board"], "--stage board: give the board with --host"),
        (["--pairs", pairs, "--folds", 1000], "--folds 1000"),
        (["--pairs", pairs, "--threshold", 0.5], "--threshold"),
    ]:
        result = CliRunner().invoke(cli, ["evaluate", str(embedding_model / "emb_out"), str(dataset)]
                                    + [str(a) for a in args])
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.board
def test_board_stage_gives_the_hosts_distances(embedding_model, lfw, stages, board, tmp_path):
    """An embedding-only bundle deployed to a board (loopback OpenSSH, the board's Python 3.8 environment):
    the same pairs through the runtime's --parity there give onnxruntime's distances."""
    from edgepad.deploy.bundle import BundleOptions, build_bundle

    dataset, pairs = lfw
    build_bundle(BundleOptions(tmp_path / "bundle", None, embedding=embedding_model / "emb_out"))
    assert board.deploy(tmp_path / "bundle").passed
    result = run_json("evaluate", embedding_model / "emb_out", dataset, "--pairs", pairs, "--stage", "board",
                      "--folds", 4, *board.cli_args(), "--board-backend", "onnxruntime")
    reference = stages["onnx"]
    assert [d is None for d in result["distances"]] == [d is None for d in reference["distances"]]
    np.testing.assert_allclose([d for d in result["distances"] if d is not None],
                               [d for d in reference["distances"] if d is not None], atol=1e-5)
    assert result["accuracy"] == reference["accuracy"] and result["stage"] == "board"
    assert not list(board.remote_dir.glob(".evaluate-*")), "scratch files left on the board"


# -- the runtime: embeddings and a gallery on the host ---------------------------------------------------------------
def test_edgepad_run_embeds_faces_and_matches_the_gallery(embedding_model, lfw, tmp_path):
    import onnxruntime

    from edgepad.runtime.align import align_face

    dataset, _ = lfw
    gallery = tmp_path / "gallery"
    for person in ("Eileen_Collins", "Group_Person2", "Group_Person5"):
        (gallery / person).mkdir(parents=True)
        shutil.copy(dataset / person / f"{person}_0001.jpg", gallery / person)
    emb = embedding_model / "emb_out"
    query = dataset / "Eileen_Collins" / "Eileen_Collins_0001.jpg"
    (face,) = run_json("run", query, "--classifier", emb, "--gallery", gallery)["faces"]
    assert "live" not in face and "is_live" not in face
    embedding = np.array(face["embedding"])
    assert embedding.shape == (64,) and np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)
    assert face["nearest"] == face["identity"] == "Eileen_Collins" and face["distance"] < 1e-5

    # The embedding, by hand: the face found by the detector (tested on its own), aligned, onnxruntime, L2 norm.
    # (The JSON's landmarks are rounded to 0.1 px, which this untrained net notices.)
    from edgepad.data.faces import DetectorSettings, make_detector

    from support.runtime_models import detector_models_dir

    image = cv2.imread(str(query))
    (found,) = make_detector(DetectorSettings(), str(detector_models_dir())).detect(image)
    np.testing.assert_allclose(found.landmarks, face["landmarks"], atol=0.051)
    crop = align_face(image, found.landmarks, 112)
    x = (cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) - 127.5) / 127.5
    session = onnxruntime.InferenceSession(str(emb / "model.onnx"))
    vector = session.run(None, {session.get_inputs()[0].name: x[None]})[0][0]
    np.testing.assert_allclose(embedding, vector / np.linalg.norm(vector), atol=1e-5)

    # Someone not enrolled: the nearest person and distance are given; identity only below the threshold.
    stranger = dataset / "Tom_Hanks" / "Tom_Hanks_0002.jpg"
    (face,) = run_json("run", stranger, "--classifier", emb, "--gallery", gallery)["faces"]
    assert face["nearest"] in {"Eileen_Collins", "Group_Person2", "Group_Person5"} and face["distance"] > 0.1
    assert face["identity"] == (face["nearest"] if face["distance"] < 1.0 else None)  # the card's match_threshold
    (strict,) = run_json("run", stranger, "--classifier", emb, "--gallery", gallery,
                         "--match-threshold", face["distance"] / 2)["faces"]
    assert strict["identity"] is None and strict["nearest"] == face["nearest"]


def test_gallery_errors_are_one_line(embedding_model, tmp_path):
    (tmp_path / "people" / "nobody").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "people" / "nobody" / "grey.png"), np.full((200, 200, 3), 128, np.uint8))
    result = CliRunner().invoke(cli, ["run", str(FACES / "astronaut.png"), "--classifier",
                                      str(embedding_model / "emb_out"), "--gallery", str(tmp_path / "people")])
    assert result.exit_code != 0 and "grey.png: no face found" in result.output and "Traceback" not in result.output


def test_pad_evaluation_of_an_embedding_model_points_to_pairs(embedding_model, tmp_path):
    (tmp_path / "live").mkdir()
    result = CliRunner().invoke(cli, ["evaluate", str(embedding_model / "emb_out"), str(tmp_path), "--stage", "onnx"])
    assert result.exit_code != 0 and "--pairs" in result.output and "Traceback" not in result.output
