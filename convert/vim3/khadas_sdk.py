"""vim3 backend: Khadas' own `aml_npu_sdk` (pegasus), run in the pinned TensorFlow 1.10-era image of Dockerfile.tf110.

The SDK is a download from Khadas and is mounted read-only; the work folder (ONNX graph, calibration tensors,
request) is mounted read-write and the in-container script `khadas_pegasus_job.py` drives pegasus import /
quantize / export ovxlib --optimize <target> --pack-nbg-unify with the same options as the acuitylite backend.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from edgepad.errors import ExportError, ToolkitError, UsageError

DISPLAY_NAME = "Khadas aml_npu_sdk (pegasus in Docker)"
IMAGE = "edgepad-khadas-sdk:tf110"
DOCKERFILE = Path(__file__).with_name("Dockerfile.tf110")  # the repository root's, linked here so it installs with the package
JOB_SCRIPT = Path(__file__).with_name("khadas_pegasus_job.py")
CONTAINER_WORK = "/edgepad/work"
CONTAINER_SDK = "/edgepad/sdk"


def check_target(target: str, options) -> None:
    """Khadas' SDK knows both boards' targets; what can be wrong before any work is the SDK path or docker."""
    sdk_root(options.sdk)
    _require_docker()


def _require_docker() -> None:
    if shutil.which("docker") is None:
        raise ToolkitError("--npu-toolkit khadas-sdk runs Khadas' SDK in Docker, and no `docker` is on PATH: "
                           "install Docker, or use --npu-toolkit acuitylite")


def sdk_root(sdk: Path | None) -> Path:
    if sdk is None:
        raise UsageError("--npu-toolkit khadas-sdk needs --sdk PATH: the folder of Khadas' aml_npu_sdk download")
    sdk = Path(sdk).expanduser().resolve()
    bin_dir = sdk / "acuity-toolkit" / "bin"
    if not any((bin_dir / name).is_file() for name in ("pegasus", "pegasus.py")):
        raise UsageError(f"--sdk {sdk}: no acuity-toolkit/bin/pegasus in it; give the root of Khadas' aml_npu_sdk")
    return sdk


def docker_build_command() -> list[str]:
    return ["docker", "build", "--tag", IMAGE, "--file", str(DOCKERFILE), str(DOCKERFILE.parent)]


def docker_run_command(work: Path, sdk: Path) -> list[str]:
    uid_gid = f"{os.getuid()}:{os.getgid()}"  # files written into the work folder stay the user's
    return ["docker", "run", "--rm", "--user", uid_gid,
            "--volume", f"{sdk}:{CONTAINER_SDK}:ro", "--volume", f"{work}:{CONTAINER_WORK}",
            "--workdir", CONTAINER_WORK, IMAGE,
            "python3", f"{CONTAINER_WORK}/{JOB_SCRIPT.name}",
            "--request", f"{CONTAINER_WORK}/request.json", "--sdk", CONTAINER_SDK]


def compile(*, onnx_path: Path, input_name: str, input_shape, outputs, scheme: str, calibration, evaluation,
            target: str, name: str, options=None, home=None, pixel_input: bool = False):
    from .toolkit_env import default_home
    from .vim3_npu import NpuCompilation

    sdk = sdk_root(getattr(options, "sdk", None))
    _require_docker()
    home = Path(home) if home else default_home().parent / "khadas"
    work = home / "runs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{name}"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "edgepad.log"
    shutil.copy2(onnx_path, work / "model.onnx")
    shutil.copy2(JOB_SCRIPT, work / JOB_SCRIPT.name)
    samples = calibration if len(calibration) else evaluation
    tensors = work / "calibration"
    tensors.mkdir(exist_ok=True)
    lines = []
    for i, x in enumerate(samples):
        np.save(tensors / f"{i:04d}.npy", np.asarray(x, np.float32))
        lines.append(f"calibration/{i:04d}.npy")  # relative to the container's working folder
    (work / "dataset.txt").write_text("\n".join(lines) + "\n")
    (work / "request.json").write_text(json.dumps({
        "onnx": "model.onnx", "input_name": input_name, "input_shape": list(input_shape), "outputs": list(outputs),
        "scheme": scheme, "target": target, "case_name": name, "dataset": "dataset.txt",
        "calibration_count": len(samples),
    }, indent=2))

    if _run(["docker", "image", "inspect", IMAGE], log, check=False) != 0:
        _run(docker_build_command(), log, what=f"building the {IMAGE} image from {DOCKERFILE.name}")
    _run(docker_run_command(work, sdk), log, check=False)
    result_path = work / "result.json"
    result = json.loads(result_path.read_text()) if result_path.is_file() else None
    if not result or not result.get("ok"):
        message = (result or {}).get("error", {}).get("message", "the container wrote no result.json")
        raise ToolkitError(f"Khadas SDK: {message} (logs: {log}, {work / 'pegasus.log'})")
    nbg_dir = work / result["nbg_dir"]
    if not (nbg_dir / "network_binary.nb").is_file():
        raise ExportError(f"Khadas SDK wrote no network_binary.nb in {nbg_dir} (log: {work / 'pegasus.log'})")
    quantizer = {"uint8": "asymmetric_affine uint8", "int8": "perchannel_symmetric_affine int8",
                 "int16": "dynamic_fixed_point int16", "float16": "float16"}[scheme]
    return NpuCompilation(nbg_dir=nbg_dir, case_dir=nbg_dir, case_name=name, toolkit="khadas aml_npu_sdk",
                          toolkit_version=_sdk_version(sdk), quantizer=quantizer, float_outputs=None,
                          quantized_outputs=None, log=str(work / "pegasus.log"))


def _sdk_version(sdk: Path) -> str | None:
    for candidate in (sdk / "acuity-toolkit" / "bin" / "VERSION", sdk / "VERSION"):
        if candidate.is_file():
            return candidate.read_text().strip().splitlines()[0]
    return None


def _run(command: list[str], log: Path, what: str = "", check: bool = True) -> int:
    with open(log, "ab") as log_file:
        log_file.write(("$ " + " ".join(command) + "\n").encode())
        log_file.flush()
        code = subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT).returncode
    if check and code != 0:
        raise ToolkitError(f"{what} failed (exit {code}); log: {log}")
    return code
