"""`edgepad bundle`: collect the converted models, the runtime and reference outputs into one folder."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgepad.commands.options import verbose_option


@click.command()
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path),
              help="Bundle folder to write (completely or not at all).")
@click.option("--classifier", type=click.Path(path_type=Path),
              help="The classifier's `edgepad convert` output folder.")
@click.option("--embedding", type=click.Path(path_type=Path),
              help="A face recognition model's `edgepad convert` output folder (models/embedding/ on the board).")
@click.option("--detector", type=click.Path(path_type=Path), help="Folder with pnet/, rnet/, onet/ (MTCNN, each an "
              "`edgepad convert` output), e.g. from `edgepad models detector -o DIR`.")
@click.option("--sample-images", type=click.Path(path_type=Path),
              help="Folder of real face crops added to the classifier's reference inputs.")
@click.option("--estimate-image", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="A camera frame with faces: add the estimated on-board NPU time per frame like it (the toolkit's "
                   "performance model; counts of each net's inferences from the host's pipeline on it).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest summary as JSON on stdout.")
@verbose_option
def bundle(out, classifier, embedding, detector, sample_images, estimate_image, force, as_json):
    """Build a deployable bundle: models/, runtime/, reference inputs with the host's outputs, manifest.json.

    The manifest lists every file with its sha256 and size; `edgepad deploy` checks them on both ends.

    \b
    Example:
      edgepad bundle -o pad_bundle --classifier pad_out --detector mtcnn_out
    """
    from edgepad.deploy.bundle import BundleOptions, build_bundle
    from edgepad.deploy.estimate import describe
    from edgepad.progress import Steps

    options = BundleOptions(out, classifier, detector, sample_images, force, embedding, estimate_image)
    result = build_bundle(options, Steps(quiet=as_json))
    summary = {
        "bundle": str(result.out),
        "files": len(result.manifest.files),
        "bytes": result.manifest.total_bytes,
        "models": sorted(result.manifest.models),
        "reference_inputs": result.reference_inputs,
        "npu_estimate": result.npu_estimate,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"{result.out}: {summary['files']} files, {summary['bytes'] / 1e6:.1f} MB, "
                   f"models {', '.join(summary['models'])}")
        for line in describe(result.npu_estimate) if result.npu_estimate else []:
            click.echo(line)

