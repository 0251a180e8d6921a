"""vim3 backend: VeriSilicon's acuitylite from PyPI, run in the toolkit venv through toolkit_worker.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgepad.errors import ExportError, ToolkitError

from .compilation import NpuCompilation, quantizer_request
from .npu_lib.perf_estimate import SHOW_PERF_ENV

DISPLAY_NAME = "acuitylite"


def check_target(target: str, options, home=None) -> None:
    """Refuse a board the bundled emulator does not know: the exporter would compile for another NPU."""
    from .toolkit_env import emulator_targets, require_toolkit
    env = require_toolkit(home)
    known = emulator_targets(env.sdk_dir)
    if not known:
        raise ToolkitError(f"{env.sdk_dir}: the unpacked Vivante SDK is missing; run `edgepad toolkit install --force`")
    if target not in known:
        version = (env.installed() or {}).get("versions", {}).get("acuitylite")
        board = options.board
        raise ExportError(f"--board {board}: acuitylite {version} cannot compile for {target} (its SDK does not know "
                          f"that NPU and would silently write a binary for another one); use --npu-toolkit khadas-sdk "
                          f"--sdk PATH with Khadas' SDK for {board}, or --board vim3")


def compile(*, onnx_path: Path, input_name: str, input_shape, outputs, scheme: str, calibration, evaluation,
            target: str, name: str, options=None, home=None, pixel_input: bool = False):
    """ONNX -> quantized -> float/quantized simulation + per-layer table -> NBG and ovxlib case, in the toolkit."""
    from .toolkit_env import DEFAULT_NBG_FORMAT, NBG_FORMAT_SDKS, emulator_library, require_toolkit, run_worker

    env = require_toolkit(home)
    nbg_format = getattr(options, "nbg_format", DEFAULT_NBG_FORMAT)
    nbg_sdk = env.nbg_sdk_dir(nbg_format)
    if not emulator_library(nbg_sdk).is_file():
        raise ToolkitError(f"--nbg-format {nbg_format}: acuitylite {NBG_FORMAT_SDKS[nbg_format]}'s vsi_sdk, which "
                           f"writes that format, is not installed ({nbg_sdk}); run `edgepad toolkit install`")
    log = env.new_log(f"vim3-{name}")
    run_dir = env.home / "runs" / log.stem
    run_dir.mkdir(parents=True, exist_ok=True)
    request = {
        "onnx": str(Path(onnx_path).resolve()), "input_name": input_name, "input_shape": list(input_shape),
        "outputs": list(outputs), **quantizer_request(scheme), "target": target, "case_name": name,
        "sdk": str(env.sdk_dir), "nbg_sdk": str(nbg_sdk), "out_dir": str(run_dir), "layer_inputs": 4,
        "min_cosine": None if getattr(options, "export_below_gates", False) else getattr(options, "min_cosine", None),
        "pixel_input": pixel_input,
        "int16_layers": list(getattr(options, "int16_layers", None) or []),
        "evaluation": _save(run_dir / "evaluation.npy", evaluation),
        "calibration": _save(run_dir / "calibration.npy", calibration) if len(calibration) else None,
    }
    # the performance model prices the graph when the export verifies it: its estimate lands in the log
    result = run_worker(env, "compile", request, log_name=f"vim3-{name}", log=log, extra_env=SHOW_PERF_ENV)
    names = [o["onnx_name"] for o in result["outputs"]]
    if sorted(names) != sorted(outputs):
        raise ExportError(f"acuitylite's outputs {names} do not match the ONNX outputs {list(outputs)} (log: {log})")
    return NpuCompilation(
        nbg_dir=Path(result["nbg_dir"]), case_dir=Path(result["case_dir"]), case_name=name, toolkit="acuitylite",
        toolkit_version=result.get("acuitylite"), quantizer=f"{result['quantizer']} {result['qtype']}",
        float_outputs=_load(result["float_outputs"], names),
        quantized_outputs=_load(result["quantized_outputs"], names),
        layers=json.loads(Path(result["layers"]).read_text()), log=str(log), layers_file=result["layers"],
        input_quantization=result.get("input_quantization"), layer_dump=result.get("layer_dump"),
        simulation_files={"inputs": request["evaluation"], "outputs": result["quantized_outputs"]},
        requantization=result.get("requantization"),
        hybrid=result.get("hybrid"),
    )


def _save(path: Path, arrays) -> str:
    np.save(path, np.stack([np.asarray(a, np.float32) for a in arrays]))
    return str(path)


def _load(path: str, names: list[str]) -> dict[str, list[np.ndarray]]:
    with np.load(path) as data:
        return {name: list(data[str(i)]) for i, name in enumerate(names)}


def run_caffe(prototxt: Path, caffemodel: Path, inputs_nchw, home=None) -> tuple[list[np.ndarray], list[dict]]:
    """Import Caffe files with acuitylite's own CaffeLoader and run them in float: an independent Caffe reader.

    Returns the outputs stacked per input for each network output (in the toolkit's output order) and the layers
    the toolkit made of the files (lid, op)."""
    from .toolkit_env import require_toolkit, run_worker
    env = require_toolkit(home)
    log = env.new_log("caffe-import")
    run_dir = env.home / "runs" / log.stem
    run_dir.mkdir(parents=True, exist_ok=True)
    request = {"prototxt": str(Path(prototxt).resolve()), "caffemodel": str(Path(caffemodel).resolve()),
               "inputs": _save(run_dir / "inputs.npy", inputs_nchw), "out_dir": str(run_dir)}
    result = run_worker(env, "caffe", request, log_name="caffe-import", log=log)
    with np.load(result["arrays"]) as data:
        outputs = [data[str(i)] for i in range(len(result["outputs"]))]
    return outputs, result["layers"]
