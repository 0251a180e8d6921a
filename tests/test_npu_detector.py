"""The whole pipeline on the NPU: `edgepad models detector --to vim3` compiles MTCNN (RNet and ONet once, PNet once
per pyramid size), a classifier converted `--to onnx,vim3` joins it in a bundle, and `edgepad run` without
`--backend` runs every net with KSNN (on the host: edgepad's npu_loader over the emulator build of each library).

The reference is the same bundle on `--backend onnxruntime` (float): the faces must be the same ones, boxes within
IoU 0.8, landmarks within 3 px, the same live/spoof decisions. The detector is compiled once per test cache
(frames of astronaut.png's size, 512x512, at min face 80: 6 PNet sizes; astronaut.png itself does not calibrate).
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from support.runtime_fixtures import iou

EDGEPAD = [sys.executable, "-m", "edgepad"]
FALLBACK_NOTE = "no NPU model for input"  # the ksnn backend's note for a PNet size without an NBG


def edgepad(*args, timeout=1800) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGEPAD, *[str(a) for a in args]], capture_output=True, text=True, timeout=timeout)


def test_bad_detector_options_fail_in_one_line(tmp_path):
    out = tmp_path / "detector"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here\n")
    cases = [
        (["--frame-size", "0x0", "--calibration", empty], "error: --frame-size 0x0: give the camera's frame size"),
        (["--calibration", empty], f"error: --calibration {empty}: no .jpg or .png images in it"),
        ([], "error: --to vim3: the NPU nets are quantized with real frames; pass --calibration DIR"),
        (["--calibration", empty, "--frame-size", "100x100", "--min-face-size", "200"],
         "error: --frame-size 100x100: no face of --min-face-size 200 px fits in it"),
    ]
    for args, expected in cases:
        done = edgepad("models", "detector", "-o", out, "--to", "onnx,vim3", *args, timeout=300)
        assert done.returncode != 0
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected), done.stderr
        assert not out.exists()  # nothing half-written
    cpu_only = edgepad("models", "detector", "-o", out, "--frame-size", "640x480", timeout=300)
    assert cpu_only.returncode != 0 and cpu_only.stderr.strip() == (
        "error: --frame-size: only with --to vim3 (the NPU detector); add vim3 to --to")


def test_calibration_spans_every_pixel_value_with_two_values_moved():
    """PNet's small pyramid images are averaged down and miss 0 and 255 (55x55: 1..251); calibrated so, the
    toolkit's input scale is forced afterwards without the first bias following and the NBG compile fails. The
    darkest value of the set becomes 0 and the brightest 255, nothing else moves, the caller's arrays stay."""
    from edgepad.convert.vim3.target import span_pixel_range

    rng = np.random.default_rng(0)
    images = [rng.integers(3, 250, (12, 12, 3)).astype(np.float32) for _ in range(4)]
    originals = [x.copy() for x in images]
    spanned = span_pixel_range(images)
    assert min(x.min() for x in spanned) == 0 and max(x.max() for x in spanned) == 255
    assert sum(int(np.count_nonzero(a != b)) for a, b in zip(spanned, originals, strict=True)) == 2
    assert all(np.array_equal(a, b) for a, b in zip(images, originals, strict=True))
    full = [np.full((2, 2, 3), 0, np.float32), np.full((2, 2, 3), 255, np.float32)]
    assert all(np.array_equal(a, b) for a, b in zip(span_pixel_range(full), full, strict=True))


@pytest.fixture(scope="module")
def npu_detector(toolkit, faces_dir, t1_true_faces):
    from support.npu_models import detector_photos, npu_detector

    return npu_detector(detector_photos(faces_dir, t1_true_faces))


@pytest.fixture(scope="module")
def npu_pipeline_bundle(npu_detector, faces_dir, tmp_path_factory):
    """`edgepad bundle` of the NPU detector and the NPU classifier the other NPU tests use (test cache)."""
    from support.npu_models import converted_npu_models

    classifier = converted_npu_models(faces_dir, tmp_path_factory.mktemp("npu_models"))["classifier"].out
    out = tmp_path_factory.mktemp("npu_pipeline") / "bundle"
    done = edgepad("bundle", "-o", out, "--classifier", classifier, "--detector", npu_detector[0],
                   "--sample-images", faces_dir, "--estimate-image", faces_dir / "astronaut.png")
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.mark.toolkit
def test_every_pyramid_size_has_its_nbg_on_the_card(npu_detector):
    from edgepad.runtime.card import ModelCard
    from edgepad.runtime.detector import pyramid_sizes
    from edgepad.runtime.nbg_header import read_nbg_header

    folder, summary = npu_detector
    pyramid = [f"{h}x{w}" for h, w in pyramid_sizes(512, 512, 80)]
    card = ModelCard.load(folder / "pnet")
    sizes = card.targets.vim3.sizes
    assert sorted(sizes) == sorted([*pyramid, "48x48"])  # and the health check's size (PNet's card input)
    assert summary["pnet_sizes"] == pyramid and summary["pnet_check_size"] == "48x48"
    assert (card.mtcnn.frame_sizes, card.mtcnn.min_face_size, card.mtcnn.pyramid_sizes) == (["512x512"], 80, pyramid)
    for key, entry in sizes.items():
        h, w = (int(v) for v in key.split("x"))
        assert entry.input.shape == [1, 3, h, w]
        header = read_nbg_header(str(folder / "pnet" / entry.nb))
        assert header.pid == 0x88  # the VIM3's NPU
        assert (folder / "pnet" / entry.library).is_file()
    for net in ("rnet", "onet"):
        vim3 = ModelCard.load(folder / net).targets.vim3
        assert vim3.sizes is None and (folder / net / vim3.nbg).is_file()
    assert summary["nbgs"] == len(sizes) + 2
    assert summary["nbg_bytes"] == sum(p.stat().st_size for p in folder.rglob("*.nb"))


@pytest.mark.toolkit
def test_the_estimate_counts_every_pnet_size_on_the_npu(npu_pipeline_bundle):
    """estimate.json: one frame like astronaut.png runs PNet at the sizes it was compiled for, each estimated."""
    from edgepad.runtime.detector import pyramid_sizes

    estimate = json.loads((npu_pipeline_bundle / "estimate.json").read_text())
    pnet = estimate["frame"]["models"]["pnet"]
    assert pnet["sizes"] == [f"{h}x{w}" for h, w in pyramid_sizes(512, 512, 80)]
    assert "sizes_not_estimated" not in pnet and estimate["frame"]["not_estimated"] == []
    assert estimate["frame"]["estimated_total_ms"] > 0


@pytest.mark.toolkit
def test_run_without_backend_runs_every_net_on_the_npu_with_the_faces_of_the_cpu(npu_pipeline_bundle, faces_dir):
    image = faces_dir / "astronaut.png"
    runs = {}
    # no --min-face-size: the runtime takes the one PNet was compiled for (80), so every size has its NBG
    for name, extra in (("npu", []), ("cpu", ["--backend", "onnxruntime", "--min-face-size", 80])):
        done = edgepad("run", image, "--bundle", npu_pipeline_bundle, "--json", *extra)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[name] = (json.loads(done.stdout), done.stderr)
    (npu, npu_notes), (cpu, _) = runs["npu"], runs["cpu"]
    assert npu["backends"] == {"pnet": "ksnn", "rnet": "ksnn", "onet": "ksnn", "classifier": "ksnn"}
    assert FALLBACK_NOTE not in " ".join(npu_notes.split())  # every pyramid size of this image ran on its own NBG
    assert set(cpu["backends"].values()) == {"onnxruntime"}
    assert len(npu["faces"]) == len(cpu["faces"]) == 1  # astronaut.png: one face
    for on_npu, on_cpu in zip(npu["faces"], cpu["faces"], strict=True):
        assert iou(on_npu["box"], on_cpu["box"]) >= 0.8
        distances = np.linalg.norm(np.subtract(on_npu["landmarks"], on_cpu["landmarks"]), axis=1)
        assert distances.max() <= 3.0, distances
        assert on_npu["is_live"] == on_cpu["is_live"]


@pytest.mark.board
@pytest.mark.toolkit
def test_deploy_checks_the_detector_on_the_npu(board, npu_pipeline_bundle):
    done = edgepad("deploy", npu_pipeline_bundle, "--json", *board.cli_args())
    assert done.returncode == 0, done.stderr + done.stdout
    health = json.loads(done.stdout)["health"]
    assert health["passed"] and health["backend"] == "ksnn"
    assert set(health["libraries"].values()) == {"emulator"}  # verified: the x86 loopback board runs the emulator
    pnet_libraries = [path for path in health["libraries"] if path.split("/")[1] == "pnet"]
    assert len(pnet_libraries) == 7  # one per PNet size
    assert {row["model"] for row in health["outputs"]} == {"pnet", "rnet", "onet", "classifier"}
    for row in health["outputs"]:  # PNet too: its 48x48 check size has an NBG
        assert row["backend"] == "ksnn" and row["reference"].startswith("host emulator"), row


@pytest.mark.toolkit
def test_a_pyramid_size_without_its_nbg_runs_on_the_cpu_with_a_note(npu_pipeline_bundle, faces_dir):
    """At min face 60 the pyramid of a 512x512 image starts at 103x103, a size the detector was not compiled for:
    that size runs on onnxruntime, saying so once per size, and the compiled sizes still run on the NPU."""
    from edgepad.runtime.detector import pyramid_sizes

    done = edgepad("run", faces_dir / "astronaut.png", "--bundle", npu_pipeline_bundle, "--min-face-size", 60,
                   "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    compiled = {f"{h}x{w}" for h, w in pyramid_sizes(512, 512, 80)} | {"48x48"}
    missing = [f"{h}x{w}" for h, w in pyramid_sizes(512, 512, 60) if f"{h}x{w}" not in compiled]
    assert missing  # 103x103, 73x73, ...
    said = " ".join(done.stderr.split())  # the notes as one line: the console wraps them at its width
    for size in missing:
        assert said.count(f"pnet: no NPU model for input {size} (7 sizes compiled); that size runs on "
                                 "onnxruntime") == 1, said
    assert result["backends"]["pnet"] == "ksnn" and len(result["faces"]) == 1


@pytest.mark.toolkit
def test_a_smaller_image_runs_pnet_padded_to_the_compiled_frame_on_the_npu(npu_pipeline_bundle, faces_dir,
                                                                           tmp_path):
    """A 480x448 cut of astronaut.png has pyramid sizes none of the 512x512 detector's NBGs fit: its pyramid is
    computed on the image padded black to 512x512, said once, every level on the NPU, and the face is the one
    onnxruntime finds on the unpadded image."""
    import cv2

    image = cv2.imread(str(faces_dir / "astronaut.png"))[:448, 32:]
    path = tmp_path / "astronaut_480x448.png"
    cv2.imwrite(str(path), image)
    runs = {}
    for name, extra in (("npu", []), ("cpu", ["--backend", "onnxruntime", "--min-face-size", 80])):
        done = edgepad("run", path, "--bundle", npu_pipeline_bundle, "--json", *extra)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[name] = (json.loads(done.stdout), " ".join(done.stderr.split()))
    (npu, npu_notes), (cpu, _) = runs["npu"], runs["cpu"]
    assert FALLBACK_NOTE not in npu_notes
    assert npu_notes.count("pnet: a 480x448 image runs PNet's pyramid padded to the 512x512 frame") == 1
    assert npu["backends"] == {"pnet": "ksnn", "rnet": "ksnn", "onet": "ksnn", "classifier": "ksnn"}
    assert len(npu["faces"]) == len(cpu["faces"]) == 1
    assert iou(npu["faces"][0]["box"], cpu["faces"][0]["box"]) >= 0.8
    distances = np.linalg.norm(np.subtract(npu["faces"][0]["landmarks"], cpu["faces"][0]["landmarks"]), axis=1)
    assert distances.max() <= 3.0, distances
