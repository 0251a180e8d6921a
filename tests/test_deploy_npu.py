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


@pytest.fixture(scope="module")
def npu_bundle(toolkit, faces_dir, tmp_path_factory):
    from edgepad.deploy.bundle import BundleOptions, build_bundle
    from support.npu_models import converted_npu_models

    classifier = converted_npu_models(faces_dir, tmp_path_factory.mktemp("npu_models"), ("classifier",))["classifier"]
    out = tmp_path_factory.mktemp("bundles") / "npu_bundle"
    build_bundle(BundleOptions(out, classifier.out, sample_images=faces_dir))
    return out


def test_bundle_carries_the_emulator_outputs_of_its_npu_library(npu_bundle):
    """reference/outputs.ksnn.npz is what the library computes: the quantized model (close to onnxruntime's float
    outputs, not equal to them), for the models with NPU files."""
    from edgepad.convert.parity import QUANTIZED_MIN_COSINE, compare_outputs
    from edgepad.deploy.reference import per_input

    with np.load(npu_bundle / "reference" / "outputs.ksnn.npz") as data:
        npu = {k: data[k] for k in data.files}
    with np.load(npu_bundle / "reference" / "outputs.npz") as data:
        onnx = {k: data[k] for k in data.files}
    assert sorted(npu) == sorted(onnx) == ["classifier/pad_prob"]
    assert not np.array_equal(npu["classifier/pad_prob"], onnx["classifier/pad_prob"])  # quantized: not float
    parity = compare_outputs({"pad_prob": per_input(onnx["classifier/pad_prob"])},
                             {"pad_prob": per_input(npu["classifier/pad_prob"])}, reference_name="onnxruntime",
                             candidate_name="emulator", atol=None, min_cosine=QUANTIZED_MIN_COSINE)
    parity.raise_if_failed("classifier")
    manifest = json.loads((npu_bundle / "manifest.json").read_text())
    assert "reference/outputs.ksnn.npz" in {f["path"] for f in manifest["files"]}


def test_deploy_checks_the_npu_and_refuses_an_nbg_for_another_npu(board, npu_bundle, tmp_path):
    ran = subprocess.run(EDGEPAD + ["deploy", str(npu_bundle), "--json", *board.cli_args()],
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr + ran.stdout
    good = json.loads(ran.stdout)
    health = good["health"]
    assert health["passed"] and health["backend"] == "ksnn"
    assert health["library"] == "emulator"  # x86 board, no ovxlib: the bundle's emulator build, said so
    assert list(health["libraries"].values()) == ["emulator"]
    (row,) = health["outputs"]
    assert row["model"] == "classifier" and row["backend"] == "ksnn" and row["reference"].startswith("host emulator")
    assert row["min_cosine"] is not None and row["cosine"] >= row["min_cosine"]
    assert row["decision_agreement"] == 1.0 and row["flipped"] == []
    cpu = health["cpu"]  # the same release on the CPU backend, against onnxruntime to float tolerance
    assert cpu["passed"] and cpu["backend"] == "onnxruntime"
    assert [(r["model"], r["backend"], r["atol"] is not None) for r in cpu["outputs"]] == [
        ("classifier", "onnxruntime", True)]
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
