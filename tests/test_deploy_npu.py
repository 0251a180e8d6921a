"""edgepad deploy of a bundle with NPU files: the health check runs the release as it will run, on the NPU.

The PAD classifier converted `--to onnx,vim3` (its library built for VeriSilicon's x86 emulator; test cache) is
bundled; the loopback board (this x86 machine over SSH, Python 3.8) has no ovxlib, so the deploy takes the
emulator build and says so. The board's NPU outputs are judged against the host emulator's outputs of the same
library (reference/outputs.ksnn.npz), then every model runs again on the CPU against onnxruntime.
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys

import numpy as np
import pytest

from support.deploy_fixtures import copy_bundle, reseal

pytestmark = [pytest.mark.board, pytest.mark.toolkit]
EDGEPAD = [sys.executable, "-m", "edgepad"]
SYNTHETIC_INPUTS_MIN_COSINE = 0.95  # the quantized model on the parity images: the same function, not a close copy


@pytest.fixture(scope="module")
def npu_bundle(toolkit, faces_dir, tmp_path_factory):
    """The classifier, RNet and ONet with NPU files; PNet without (one NBG per pyramid size is not built here)."""
    from edgepad.convert.mtcnn_models import detector_models
    from edgepad.deploy.bundle import BundleOptions, build_bundle

    from support.npu_models import converted_npu_models

    converted = converted_npu_models(faces_dir, tmp_path_factory.mktemp("npu_models"))
    detector = tmp_path_factory.mktemp("detector")
    (detector / "pnet").symlink_to(detector_models() / "pnet", target_is_directory=True)
    for net in ("rnet", "onet"):
        (detector / net).symlink_to(converted[net].out, target_is_directory=True)
    out = tmp_path_factory.mktemp("bundles") / "npu_bundle"
    build_bundle(BundleOptions(out, converted["classifier"].out, detector, sample_images=faces_dir,
                               estimate_image=faces_dir / "t1.jpg"))
    return out


def test_bundle_carries_the_emulator_outputs_of_its_npu_library(npu_bundle):
    """reference/outputs.ksnn.npz is what the library computes: the quantized model (close to onnxruntime's float
    outputs, not equal to them), for the models with NPU files. The reference inputs are the convert step's
    synthetic parity images, not the held-out faces the card's gates were measured on, and a detector's box
    offsets on a gradient image are small numbers whose cosine moves with single steps (ONet's bbox_reg: 0.9797
    on 4 of them while 0.997 on the held-out faces), so the bound here is "the quantized model, not another one"."""
    from edgepad.convert.parity import compare_outputs
    from edgepad.deploy.reference import per_input

    manifest = json.loads((npu_bundle / "manifest.json").read_text())
    with np.load(npu_bundle / "reference" / "outputs.ksnn.npz") as data:
        npu = {k: data[k] for k in data.files}
    with np.load(npu_bundle / "reference" / "outputs.npz") as data:
        onnx = {k: data[k] for k in data.files}
    assert sorted({k.split("/")[0] for k in npu}) == ["classifier", "onet", "rnet"]  # not PNet: no NPU files
    for key, values in npu.items():
        assert not np.array_equal(values, onnx[key])  # quantized, not float
        parity = compare_outputs({key: per_input(onnx[key])}, {key: per_input(values)}, reference_name="onnxruntime",
                                 candidate_name="emulator", atol=None, min_cosine=SYNTHETIC_INPUTS_MIN_COSINE)
        parity.raise_if_failed(key)
    assert "reference/outputs.ksnn.npz" in {f["path"] for f in manifest["files"]}


def test_deploy_checks_the_npu_and_refuses_an_nbg_for_another_npu(board, npu_bundle, tmp_path):
    ran = subprocess.run(EDGEPAD + ["deploy", str(npu_bundle), "--json", *board.cli_args()],
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr + ran.stdout
    good = json.loads(ran.stdout)
    health = good["health"]
    assert health["passed"] and health["backend"] == "ksnn"
    assert health["library"] == "emulator"  # x86 board, no ovxlib: the bundle's emulator build, said so
    assert set(health["libraries"].values()) == {"emulator"}
    assert sorted(path.split("/")[1] for path in health["libraries"]) == ["classifier", "onet", "rnet"]
    for row in health["outputs"]:
        if row["model"] == "pnet":  # no NPU files: the CPU backend, float tolerance against onnxruntime
            assert row["backend"] == "onnxruntime" and row["atol"] is not None
        else:
            assert row["backend"] == "ksnn" and row["reference"].startswith("host emulator")
            assert row["min_cosine"] is not None and row["cosine"] >= row["min_cosine"]
    (decided,) = [row for row in health["outputs"] if "decision_agreement" in row]
    assert decided["model"] == "classifier" and decided["decision_agreement"] == 1.0
    assert decided["flipped_inputs"] == []
    cpu = health["cpu"]  # the same release on the CPU backend, against onnxruntime to float tolerance
    assert cpu["passed"] and cpu["backend"] == "onnxruntime"
    assert {(r["model"], r["backend"], r["atol"] is not None) for r in cpu["outputs"]} == {
        (m, "onnxruntime", True) for m in ("classifier", "onet", "pnet", "rnet")}
    assert board.current() == good["release"]

    # the same bundle with its NBG compiled for another NPU (pid 0x99, the VIM3L's) is refused at the health check
    bad = copy_bundle(npu_bundle, tmp_path / "other_npu")
    nbg = bad / "models" / "classifier" / "vim3" / "network_binary.nb"
    data = bytearray(nbg.read_bytes())
    assert struct.unpack_from("<I", data, 8)[0] == 0x88
    struct.pack_into("<I", data, 8, 0x99)
    nbg.write_bytes(bytes(data))
    reseal(bad)
    ran = subprocess.run(EDGEPAD + ["deploy", str(bad), "--json", *board.cli_args()], capture_output=True, text=True)
    assert ran.returncode != 0
    refused = json.loads(ran.stdout)
    assert refused["rolled_back"] is True and refused["health"]["passed"] is False
    assert refused["health"]["backend"] == "ksnn"
    assert "pid 0x88" in refused["error"] and "pid 0x99" in refused["error"]
    assert board.current() == good["release"]
    assert (board.remote_dir / "releases" / f".failed-{refused['release']}").is_dir()


def test_bundle_estimates_the_npu_time_per_frame(npu_bundle, faces_dir):
    """estimate.json: the toolkit's performance model per net (from each report.json) and per frame of t1.jpg, with
    PNet once per pyramid size and the classifier once per face, marked as an estimate; PNet (CPU) not estimated."""
    import cv2

    from edgepad.runtime.detector import DetectorSettings, pyramid_sizes

    estimate = json.loads((npu_bundle / "estimate.json").read_text())
    assert estimate["estimate"] is True and "not a measurement" in estimate["note"]
    for net in ("classifier", "rnet", "onet"):
        report = json.loads((npu_bundle / "models" / net / "report.json").read_text())
        expected = report["vim3_emulated"]["estimated_board_time"]["ms_per_inference"]
        assert estimate["models"][net] == {"on_npu": True, "ms_per_inference": expected} and expected > 0
    assert estimate["models"]["pnet"]["on_npu"] is False
    frame = estimate["frame"]
    height, width = cv2.imread(str(faces_dir / "t1.jpg")).shape[:2]
    settings = DetectorSettings()
    sizes = pyramid_sizes(height, width, settings.min_face_size, settings.scale_factor)
    assert frame["models"]["pnet"]["inferences"] == len(sizes) and frame["models"]["pnet"]["estimated_ms"] is None
    assert frame["faces"] == 6 == frame["models"]["classifier"]["inferences"]
    assert frame["models"]["rnet"]["inferences"] >= frame["models"]["onet"]["inferences"] >= frame["faces"]
    per_net = {n: frame["models"][n]["inferences"] * estimate["models"][n]["ms_per_inference"]
               for n in ("classifier", "rnet", "onet")}
    assert frame["estimated_total_ms"] == pytest.approx(sum(per_net.values()), abs=1e-3)
    assert frame["not_estimated"] == ["pnet"]


def test_the_board_builds_a_library_for_its_machine_from_the_shipped_case(npu_bundle, toolkit, tmp_path,
                                                                         monkeypatch):
    """A release whose library is for another machine (an aarch64 build here, on x86-64) gets one built on the board
    with build_board.sh and the board's gcc and ovxlib (here the toolkit SDK's, named as a board names its own
    with OVXLIB_INCLUDE / OVXLIB_LIB) into vim3/<machine>/, which the runtime's ksnn backend then prefers; without
    ovxlib the build fails in one line naming the library."""
    import os
    import platform
    import shutil

    from edgepad.deploy import board_ops
    from edgepad.runtime.backends.ksnn_backend import machine_library

    compiler = shutil.which("aarch64-linux-gnu-gcc")
    assert compiler, "install gcc-aarch64-linux-gnu and libc6-dev-arm64-cross (.ci/install.sh does)"
    release = tmp_path / "releases" / "r1"
    vim3 = release / "models" / "rnet" / "vim3"
    shutil.copytree(npu_bundle / "models" / "rnet" / "vim3", vim3)
    (library,) = vim3.glob("libnn_*.so")
    sdk = toolkit.sdk_dir / "prebuilt-sdk" / "x86_64_linux"
    objects = tmp_path / "aarch64-objects"
    env = dict(os.environ, CC=compiler, BUILD_DIR=str(objects), OVXLIB_INCLUDE=str(sdk / "include"))
    subprocess.run(["bash", str(vim3 / "build_board.sh"), "--objects-only"], env=env, check=True, capture_output=True)
    subprocess.run([compiler, "-shared", "-o", str(library), *map(str, objects.glob("*.o"))], check=True)
    relative = library.relative_to(release).as_posix()
    request = {"root": str(tmp_path), "release": "r1", "libraries": [relative], "seconds": 300}

    monkeypatch.delenv("OVXLIB_INCLUDE", raising=False)
    failed = board_ops.op_npu_libraries(request)
    assert failed["libraries"] == {} and relative in failed["error"] and "ovxlib headers not found" in failed["error"]

    monkeypatch.setenv("OVXLIB_INCLUDE", str(sdk / "include"))
    monkeypatch.setenv("OVXLIB_LIB", str(sdk / "lib"))
    built = board_ops.op_npu_libraries(request)
    assert built == {"machine": platform.machine(), "libraries": {relative: "built"}, "error": None}
    native = vim3 / platform.machine() / library.name
    assert board_ops.elf_machine(str(native)) == platform.machine() and not board_ops.is_emulator_build(str(native))
    assert machine_library(str(library)) == str(native)
    assert board_ops.op_npu_libraries(request)["libraries"] == {relative: "installed"}  # now there: not rebuilt
