"""`edgepad models`: the models edgepad itself provides (the MTCNN face detector the runtime uses)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgepad.commands.options import verbose_option


@click.group()
def models() -> None:
    """Models edgepad provides for the runtime (the face detector)."""


@models.command()
@click.option("-o", "--out", type=click.Path(path_type=Path),
              help="Write pnet/, rnet/, onet/ here. Default: the cache ($EDGEPAD_HOME or ~/.cache/edgepad).")
@click.option("--force", is_flag=True, help="Rebuild even if the folder already holds the models.")
@click.option("--json", "as_json", is_flag=True, help="Print where the models are and their parity figures as JSON.")
@verbose_option
def detector(out, force, as_json):
    """Build MTCNN's PNet, RNet and ONet from the mtcnn package's weights with edgepad convert.

    Each net becomes a convert output folder (ONNX, and Caffe when that target is available), checked
    against Keras; `edgepad bundle` copies them to the board as models/pnet, models/rnet, models/onet.
    """
    from edgepad.convert.mtcnn_models import build_detector_models, default_cache_dir, detector_models
    from edgepad.progress import Steps

    steps = Steps(quiet=as_json)
    if out is None and not force:
        folder = detector_models(steps=steps)
    else:
        folder = build_detector_models(out or default_cache_dir(), force=force or out is None, steps=steps)
    summary = {"folder": str(folder), "nets": {}}
    for net in ("pnet", "rnet", "onet"):
        report = json.loads((folder / net / "report.json").read_text())
        summary["nets"][net] = {key: {"max_abs": section.get("max_abs"), "passed": section.get("passed")}
                                for key, section in report.items() if isinstance(section, dict) and "passed" in section}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(str(folder))

