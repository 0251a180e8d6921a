"""`--npu-toolkit khadas-sdk`: the docker and pegasus command lines edgepad drives, and the in-container script.

There is no Docker engine and no Khadas SDK here, so `docker` and `pegasus` are stand-ins (tests/standins/) that
check each call against the tools' documented command lines and record it. What these tests prove: the image is
built from Dockerfile.tf110 once, the SDK is mounted read-only, the in-container script runs pegasus import /
generate inputmeta / quantize / export ovxlib --optimize <target> --pack-nbg-unify with the options of the
conversion, and edgepad takes the NBG back through its header check into OUT/vim3 and the card. What they cannot
prove: that Khadas' real pegasus accepts these files and compiles them.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.paths import LEGACY_H5
from edgepad.convert.vim3.khadas_sdk import CONTAINER_SDK, DOCKERFILE, IMAGE
from edgepad.convert.pipeline import ConvertOptions, convert_model
from edgepad.errors import UsageError
from standins import install_standins, recorded_calls
from support.board_env import find_python
from support.calibration_faces import calibration_faces_dir


@pytest.fixture()
def standins(tmp_path, monkeypatch):
    bin_dir, sdk, record = install_standins(tmp_path / "standins")
    container_python = find_python("3.6")  # the image's Python (Ubuntu 18.04): the job script must run on it
    if container_python:
        (bin_dir / "python3").write_text(f"#!/bin/sh\nexec {container_python} \"$@\"\n")
        (bin_dir / "python3").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("EDGEPAD_STANDIN_RECORD", str(record))
    monkeypatch.setenv("EDGEPAD_HOME", str(tmp_path / "edgepad_home"))
    return sdk, record


@pytest.fixture(scope="session")
def calibration(faces_dir):
    return calibration_faces_dir(faces_dir)


def _convert(tmp_path, sdk, calibration, **options):
    return convert_model(ConvertOptions(model=LEGACY_H5 / "sequential_small.h5", out=tmp_path / "out",
                                        targets=("onnx", "vim3"), npu_toolkit="khadas-sdk", sdk=sdk,
                                        calibration=calibration, calibration_count=5, **options))


def _pegasus_calls(calls):
    return [c["argv"] for c in calls if c["tool"] == "pegasus"]


def _value(argv, flag):
    return argv[argv.index(flag) + 1]


def test_khadas_sdk_drives_docker_and_pegasus_as_documented(tmp_path, standins, calibration):
    sdk, record = standins
    result = _convert(tmp_path, sdk, calibration)

    calls = recorded_calls(record)
    docker = [c["argv"] for c in calls if c["tool"] == "docker"]
    assert docker[0] == ["image", "inspect", IMAGE]
    assert docker[1][:5] == ["build", "--tag", IMAGE, "--file", str(DOCKERFILE)]
    run = docker[2]
    assert run[0] == "run" and "--rm" in run
    assert f"{sdk.resolve()}:{CONTAINER_SDK}:ro" in run  # the SDK is only read
    assert run[run.index(IMAGE) + 1:run.index(IMAGE) + 2] == ["python3"]

    steps = [argv[:2] for argv in _pegasus_calls(calls)]
    assert steps == [["import", "onnx"], ["generate", "inputmeta"], ["quantize", "--quantizer"], ["export", "ovxlib"]]
    importing, inputmeta, quantize, export = _pegasus_calls(calls)
    card = result.card
    assert _value(importing, "--inputs") == card["targets"]["onnx_nchw"]["input"]
    assert _value(importing, "--input-size-list") == "3,28,28"
    assert _value(inputmeta, "--channel-mean-value") == "0 0 0 1"  # edgepad normalises the tensors itself
    assert (_value(quantize, "--quantizer"), _value(quantize, "--qtype")) == ("asymmetric_affine", "uint8")
    assert _value(quantize, "--iterations") == "5"
    assert _value(export, "--optimize") == "VIPNANOQI_PID0X88" and "--pack-nbg-unify" in export
    assert _value(export, "--viv-sdk") == f"{CONTAINER_SDK}/acuity-toolkit/bin/vcmdtools".replace(
        CONTAINER_SDK, str(sdk.resolve()))  # the stand-in docker maps mounted paths back to the host

    vim3 = card["targets"]["vim3"]
    assert vim3["backend"] == "khadas-sdk" and vim3["target"] == "VIPNANOQI_PID0X88" and vim3["pid"] == "0x88"
    assert (tmp_path / "out" / vim3["nbg"]).read_bytes()[:4] == b"VPMN"
    assert "not measured" in result.report["vim3"]["parity"]
    job_python = json.loads(Path(result.report["vim3"]["toolkit_log"]).with_name("result.json").read_text())["python"]
    assert job_python.startswith("3.6") or find_python("3.6") is None


def test_khadas_sdk_reuses_the_image_and_passes_the_scheme(tmp_path, standins, calibration):
    sdk, record = standins
    _convert(tmp_path / "a", sdk, calibration)
    _convert(tmp_path / "b", sdk, calibration, quantize="int16", board="vim3l")
    calls = recorded_calls(record)
    builds = [c for c in calls if c["tool"] == "docker" and c["argv"][0] == "build"]
    assert len(builds) == 1
    quantize = [argv for argv in _pegasus_calls(calls) if argv[0] == "quantize"][-1]
    assert (_value(quantize, "--quantizer"), _value(quantize, "--qtype")) == ("dynamic_fixed_point", "int16")
    export = [argv for argv in _pegasus_calls(calls) if argv[0] == "export"][-1]
    assert _value(export, "--optimize") == "VIPNANOQI_PID0X99"  # Khadas' SDK knows the VIM3L
    card = json.loads((tmp_path / "b" / "out" / "edgepad.json").read_text())
    assert card["targets"]["vim3"]["pid"] == "0x99"


def test_dockerfile_pins_the_tensorflow_1_10_era():
    text = DOCKERFILE.read_text()
    assert "FROM ubuntu:18.04" in text
    assert "tensorflow==1.10.0" in text


def test_khadas_sdk_without_sdk_path_is_one_clear_error(tmp_path, standins, calibration):
    with pytest.raises(UsageError, match="--sdk PATH"):
        _convert(tmp_path, None, calibration)
    assert not (tmp_path / "out").exists()


def test_khadas_sdk_failure_names_the_step_and_the_log(tmp_path, standins, calibration):
    sdk, _ = standins
    (sdk / "acuity-toolkit" / "bin" / "vcmdtools").rmdir()  # the stand-in refuses --viv-sdk to a missing folder
    from edgepad.errors import ToolkitError

    with pytest.raises(ToolkitError, match="exporting the NBG.*pegasus.log"):
        _convert(tmp_path, sdk, calibration)
    assert not (tmp_path / "out").exists()
