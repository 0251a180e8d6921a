"""`edgepad convert`: options -> ConvertOptions -> convert_model(), then a short summary or the JSON report."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgepad.commands.options import verbose_option
from edgepad.errors import UsageError


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{option} '{text}': expected a number or comma-separated numbers, e.g. 127.5 or "
                         "123.7,116.3,103.5") from None


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path),
              help="Output folder (written completely or not at all).")
@click.option("--to", "targets", help="Comma list of targets: onnx, caffe, vim3 (the VIM3 NPU binary; needs "
              "`edgepad toolkit install`), tflite (an integer TFLite model for Mesa's Teflon NPU delegate). "
              "Default: onnx,caffe.")
@click.option("--custom-objects", type=click.Path(path_type=Path),
              help="Python file defining the model's custom layers, losses and functions.")
@click.option("--output-layer", help="Export the sub-model ending at this layer (a name, or an index such as -2 to "
              "drop a training head).")
@click.option("--input-shape", help="H,W,C where the model leaves input dimensions open (batch is always 1; "
              "for an .onnx input also H,W,C, whatever its layout).")
@click.option("--layout", type=click.Choice(["nhwc", "nchw"]),
              help="Input layout of model.onnx (default nhwc). For an .onnx input: its layout, read from the graph; "
                   "give it only when the graph does not tell.")
@click.option("--mean", default="127.5", show_default=True,
              help="Subtracted from each pixel: one value or one per channel.")
@click.option("--std", default="127.5", show_default=True,
              help="Divides each pixel after the mean: one value or one per channel.")
@click.option("--channel-order", type=click.Choice(["rgb", "bgr", "gray", "rgba", "bgra"]),
              help="Channel order the model was trained on. Default: rgb for 3 channels, gray for 1, rgba for 4.")
@click.option("--labels", help="Comma list of class names, one of them 'live' (default for two classes and for a "
              "one-unit sigmoid, which gives the second label's probability: live,spoof).")
@click.option("--task", type=click.Choice(["classify", "embed"]), help="What the model's output is; default: "
              "guessed: one output that is a probability distribution, has one or two units, or one unit per "
              "--labels name is a classifier, anything else an embedding.")
@click.option("--threshold", type=float, default=0.5, show_default=True,
              help="Spoof decision threshold recorded in the model card.")
@click.option("--match-threshold", type=float, help="Embedding models: the distance (Euclidean between L2-normalised "
              "embeddings) below which two faces are one person, recorded in the card for `edgepad run --gallery`.")
@click.option("--sample-images", type=click.Path(path_type=Path),
              help="Folder of real images added to the parity inputs.")
@click.option("--atol", type=float, default=1e-4, show_default=True,
              help="Max abs difference allowed for float32 steps.")
@click.option("--board", type=click.Choice(["vim3", "vim3l"]), default="vim3", show_default=True,
              help="vim3 target: the board to compile for.")
@click.option("--quantize", type=click.Choice(["uint8", "int8", "int16", "float16", "auto"]), default="uint8",
              show_default=True, help="vim3 target: quantization scheme; auto: uint8, else uint8 with its worst "
                                      "layers in int16 (1, 2, 4, 8 of them), else int16: the first that passes "
                                      "--min-cosine and --min-agreement.")
@click.option("--calibration", type=click.Path(path_type=Path),
              help="vim3/tflite targets: folder of calibration images (jpg/png).")
@click.option("--calibration-count", type=int, default=32, show_default=True,
              help="vim3/tflite targets: use at most this many calibration images.")
@click.option("--eval-images", type=click.Path(path_type=Path),
              help="vim3/tflite targets: folder of images to judge the quantized model on (default: every 5th "
                   "calibration image or sub-folder, held out from calibration).")
@click.option("--min-cosine", type=float, default=0.98, show_default=True,
              help="vim3/tflite targets: least mean cosine of quantized against float.")
@click.option("--min-agreement", type=float, default=0.99, show_default=True,
              help="tflite target: least share of held-out images whose decision (live/spoof, or top-1) is float's.")
@click.option("--npu-toolkit", type=click.Choice(["acuitylite", "khadas-sdk"]), default="acuitylite", show_default=True,
              help="vim3 target: which toolkit compiles.")
@click.option("--sdk", type=click.Path(path_type=Path),
              help="vim3 target with --npu-toolkit khadas-sdk: path to Khadas' aml_npu_sdk.")
@click.option("--nbg-format", type=click.Choice(["1", "2"]), default="1", show_default=True,
              help="vim3 target: NBG format major (1: 0x0001xxxx as Khadas' VIM3 NBGs, acuitylite 6.45.0's SDK; "
                   "2: 0x0002xxxx, 6.57.1's).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print report.json on stdout instead of a summary.")
@verbose_option
def convert(model, out, targets, custom_objects, output_layer, input_shape, layout, mean, std, channel_order,
            labels, task, threshold, match_threshold, sample_images, atol, board, quantize, calibration,
            calibration_count, eval_images, min_cosine, min_agreement, npu_toolkit, sdk, nbg_format, force,
            as_json):
    """Convert a model to ONNX, Caffe and the VIM3 NPU, checking each step's numbers.

    MODEL is a Keras .h5 (Keras 2 or 3), a Keras 3 .keras file, a SavedModel folder, or an .onnx file (its
    original graph, run by onnxruntime, is then the reference of every target).

    Writes OUT/model.onnx (and model.prototxt/model.caffemodel, vim3/...), OUT/edgepad.json (the model card
    later steps read) and OUT/report.json (max abs difference, cosine similarity and top-1 agreement of each
    step against its reference). Fails, and writes nothing, when a step is beyond tolerance.

    \b
    Example:
      edgepad convert pad.h5 -o pad_out --to onnx,caffe --sample-images faces/
    """
    from edgepad.convert.onnx.keras_loading import parse_input_shape
    from edgepad.convert.pipeline import DEFAULT_TARGETS, ConvertOptions, convert_model, parse_targets
    from edgepad.progress import Steps

    options = ConvertOptions(
        model=model, out=out, targets=parse_targets(targets) if targets else DEFAULT_TARGETS,
        custom_objects=custom_objects,
        output_layer=output_layer, input_shape=parse_input_shape(input_shape), layout=layout,
        mean=_floats(mean, "--mean"), std=_floats(std, "--std"), channel_order=channel_order,
        labels=tuple(labels.split(",")) if labels else None, task=task, threshold=threshold,
        match_threshold=match_threshold,
        sample_images=sample_images,
        atol=atol, force=force, board=board, quantize=quantize, calibration=calibration,
        calibration_count=calibration_count, eval_images=eval_images, min_cosine=min_cosine,
        min_agreement=min_agreement, npu_toolkit=npu_toolkit, sdk=sdk,
        nbg_format=int(nbg_format),
    )
    result = convert_model(options, Steps())
    if as_json:
        click.echo(json.dumps(result.report.to_json(), indent=2))
        return
    _print_summary(result)


def _print_summary(result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"edgepad convert → {result.out}", title_justify="left")
    for column in ("step", "reference", "max abs", "cosine", "top-1", "passed"):
        table.add_column(column)
    for check in result.report.checks():
        top1 = check.top1_agreement
        table.add_row(
            check.name, check.reference or "", "-" if check.max_abs is None else f"{check.max_abs:.2e}",
            "-" if check.cosine is None else f"{check.cosine:.6f}", "-" if top1 is None else f"{top1:.0%}",
            "[green]yes[/green]" if check.passed else "[red]no[/red]",
        )
    console = Console()
    console.print(table)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
