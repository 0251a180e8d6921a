"""`edgepad models`: the models edgepad itself provides (the MTCNN face detector the runtime uses)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgepad.commands.options import verbose_option
from edgepad.errors import UsageError

DETECTOR_TO = ("onnx", "caffe", "vim3")


@click.group()
def models() -> None:
    """Models edgepad provides for the runtime (the face detector)."""


@models.command()
@click.option("-o", "--out", type=click.Path(path_type=Path),
              help="Write pnet/, rnet/, onet/ here. Default: the cache ($EDGEPAD_HOME or ~/.cache/edgepad); "
                   "required with --to vim3.")
@click.option("--to", "to", default="onnx,caffe", show_default=True,
              help="Targets: onnx,caffe (the CPU detector), or add vim3 to compile the nets for the VIM3 NPU.")
@click.option("--calibration", type=click.Path(path_type=Path),
              help="--to vim3: a folder of camera frames or photos with faces; the float detector runs on them and "
                   "each net is calibrated with what it sees there.")
@click.option("--quantize", type=click.Choice(["uint8", "int8", "int16", "float16"]), default="uint8",
              show_default=True, help="--to vim3: the NPU's number format.")
@click.option("--frame-size", "frame_sizes", multiple=True, metavar="WxH",
              help="--to vim3: the camera's frame size; PNet gets one NBG per pyramid size of it. Repeat for "
                   "several cameras. Default: 640x480 and 1280x720.")
@click.option("--min-face-size", type=float, default=None,
              help="--to vim3: the smallest face the runtime looks for (the pyramid starts there). Default: the "
                   "runtime's, 40.")
@click.option("--calibration-count", type=int, default=64, show_default=True,
              help="--to vim3: calibration images per net and size at most.")
@click.option("--force", is_flag=True, help="Rebuild even if the folder already holds the models.")
@click.option("--json", "as_json", is_flag=True, help="Print where the models are and their parity figures as JSON.")
@verbose_option
def detector(out, to, calibration, quantize, frame_sizes, min_face_size, calibration_count, force, as_json):
    """Build MTCNN's PNet, RNet and ONet from the mtcnn package's weights with edgepad convert.

    Each net becomes a convert output folder (ONNX, and Caffe when that target is available), checked
    against Keras; `edgepad bundle` copies them to the board as models/pnet, models/rnet, models/onet.

    With --to vim3 they are compiled for the NPU as well: RNet and ONet once, PNet once per pyramid size of
    each --frame-size at --min-face-size, calibrated with the float detector's inputs on the --calibration
    frames (PNet: the pyramid images; RNet, ONet: the candidate crops).

    \b
    Examples:
      edgepad models detector -o detector --to vim3 --calibration frames/
      edgepad models detector -o detector --to vim3 --calibration frames/ --frame-size 640x480 --min-face-size 60
    """
    from edgepad.convert.pipeline import parse_targets
    from edgepad.progress import Steps

    targets = parse_targets(to, choices=DETECTOR_TO)  # onnx first: every other target starts from it
    steps = Steps(quiet=as_json)
    if "vim3" in targets:
        summary = _npu_detector(out, calibration, quantize, frame_sizes, min_face_size, calibration_count, force,
                                steps)
        if as_json:
            click.echo(json.dumps(summary, indent=2))
        else:
            _print_npu_summary(summary)
        return
    extra = [name for name, value in (("--calibration", calibration), ("--frame-size", frame_sizes),
                                      ("--min-face-size", min_face_size)) if value]
    if extra:
        raise UsageError(f"{', '.join(extra)}: only with --to vim3 (the NPU detector); add vim3 to --to")
    _float_detector(out, force, as_json, steps, targets)


def _float_detector(out, force, as_json, steps, targets: tuple[str, ...]) -> None:
    from edgepad.convert.mtcnn_models import build_detector_models, default_cache_dir, detector_models
    from edgepad.convert.report import read_report

    if out is None and not force:
        folder = detector_models(steps=steps)  # the cache: the runtime's detector, ONNX and Caffe
    else:
        folder = build_detector_models(out or default_cache_dir(), force=force or out is None,
                                       targets=targets if out is not None else None, steps=steps)
    summary = {"folder": str(folder), "nets": {}}
    for net in ("pnet", "rnet", "onet"):
        report = read_report(folder / net / "report.json")
        summary["nets"][net] = {check.name: {"max_abs": check.max_abs, "passed": check.passed}
                                for check in report.checks()}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(str(folder))


def _npu_detector(out, calibration, quantize, frame_sizes, min_face_size, calibration_count, force, steps) -> dict:
    from edgepad.convert.mtcnn_npu import (
        DEFAULT_FRAME_SIZES,
        DEFAULT_MIN_FACE_SIZE,
        NpuDetectorOptions,
        build_npu_detector,
        parse_frame_size,
    )

    if out is None:
        raise UsageError("--to vim3: give -o DIR for the NPU detector (pnet/, rnet/, onet/ with their NBGs)")
    if calibration is None:
        raise UsageError("--to vim3: the NPU nets are quantized with real frames; pass --calibration DIR (photos or "
                         "camera frames with faces)")
    sizes = tuple(dict.fromkeys(parse_frame_size(text) for text in frame_sizes)) or DEFAULT_FRAME_SIZES
    options = NpuDetectorOptions(out=out, calibration=calibration, frame_sizes=sizes,
                                 min_face_size=DEFAULT_MIN_FACE_SIZE if min_face_size is None else min_face_size,
                                 quantize=quantize, calibration_count=calibration_count, force=force)
    return build_npu_detector(options, steps)


def _print_npu_summary(summary: dict) -> None:
    click.echo(f"{summary['folder']}: {summary['nbgs']} NBGs, {summary['nbg_bytes'] / 1e6:.2f} MB "
               f"({summary['vim3_bytes'] / 1e6:.2f} MB of NPU files with the libraries and cases), "
               f"frames {', '.join(summary['frame_sizes'])}, min face {summary['min_face_size']:g} px")
    for net, figures in summary["nets"].items():
        click.echo(f"  {net}: {figures['nbgs']} NBG(s), {figures['nbg_bytes'] / 1e6:.2f} MB, "
                   f"{figures['seconds']:.0f} s")
