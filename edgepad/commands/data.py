"""`edgepad extract`, `edgepad train`, `edgepad evaluate`: the seed's data workflow, from SiW videos to PAD metrics."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgepad.commands.options import verbose_option
from edgepad.errors import UsageError


@click.command()
@click.argument("root", type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path),
              help="Output folder: OUT/<split>/<label>/<subject>/<video>/<frame>.png and OUT/summary.csv.")
@click.option("--workers", type=int, default=1, show_default=True, help="Videos extracted in parallel (processes).")
@click.option("--start", type=int, default=0, show_default=True, help="First video (index into the sorted video list).")
@click.option("--end", type=int, help="Stop before this video index (default: all).")
@click.option("--keep-original", is_flag=True, help="Also write the raw box crops to OUT/original/<split>/....")
@click.option("--margin", type=float, default=0.25, show_default=True,
              help="Context added around each .face box before re-detection, as a fraction of its longer side.")
@click.option("--min-face-size", type=int, default=40, show_default=True, help="MTCNN: smallest face in pixels.")
@click.option("--confidence", type=float, default=0.7, show_default=True,
              help="MTCNN: least final face score for a face to be kept.")
@click.option("--no-borrow-boxes", is_flag=True,
              help="Do not give frames without a usable .face box the previous frame's box.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@verbose_option
def extract(root, out, workers, start, end, keep_original, margin, min_face_size, confidence, no_borrow_boxes, as_json):
    """Cut 112x112 aligned faces out of Spoof-in-the-Wild videos.

    ROOT is laid out as ROOT/Train|Test/live|spoof/<subject>/<name>.mov with <name>.face beside each video
    (one `x1 y1 x2 y2` line per frame). Each frame is cropped at its box, MTCNN re-detects the face in the
    crop and it is aligned to the ArcFace template. Broken .face lines, all-zero boxes, short .face files,
    `*.m.mov` names and unreadable videos are counted in OUT/summary.csv, not fatal. Running again skips
    the videos already finished.

    \b
    Example:
      edgepad extract /data/SiW -o crops --workers 2
    """
    from edgepad.data.extract import ExtractOptions, extract_dataset
    from edgepad.progress import Bars

    options = ExtractOptions(root=root, out=out, workers=workers, start=start, end=end, keep_original=keep_original,
                             margin=margin, min_face_size=min_face_size, confidence=confidence,
                             borrow_boxes=not no_borrow_boxes)
    with Bars(quiet=as_json) as bars:
        def progress(done: int, total: int, video: str | None) -> None:
            if video is None:  # the first call, before any video
                bars.start("videos", "Extracting", total)
            bars.update("videos", completed=done, note=video or "")

        result = extract_dataset(options, progress=progress)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        _print_extract_overview(result)


def _print_extract_overview(result) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    totals = result.totals()
    console.print(f"[bold]{result.out}[/bold]: {len(result.videos)} videos ({result.processed} extracted now, "
                  f"{result.skipped} already done), {totals['frames']} frames, "
                  f"{totals['faces_aligned']} faces aligned, "
                  f"{totals['frames_lost']} frames lost ({_percent(totals['frames_lost'], totals['frames'])}), "
                  f"{result.disk_bytes / 1e6:.1f} MB on disk")
    if result.processed:
        console.print(f"{result.frames_per_second:.1f} frames/s over {result.seconds:.1f} s")
    defects = {k: totals[k] for k in ("bad_lines", "zero_boxes", "frames_without_line", "m_mov", "unreadable",
                                      "missing_face_file") if totals[k]}
    if defects:
        console.print("defects: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in defects.items()))
    worst = result.most_lost()
    if worst:
        table = Table(title="videos with the most lost frames", title_justify="left")
        for column in ("video", "split", "frames", "lost", "no box", "no face"):
            table.add_column(column)
        for v in worst:
            table.add_row(v.video, f"{v.split}/{v.label}", str(v.frames), str(v.frames_lost), str(v.no_box),
                          str(v.no_face))
        console.print(table)
    console.print(f"per-video figures: {result.out / 'summary.csv'}")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


@click.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="The trained model, a .h5 file.")
@click.option("--val-data", type=click.Path(path_type=Path),
              help="Validation crops (default: hold out --val-fraction of DATA's subjects).")
@click.option("--val-fraction", type=float, default=0.2, show_default=True,
              help="Share of subjects held out for validation.")
@click.option("--epochs", type=int, default=50, show_default=True,
              help="At most this many epochs (early stopping may end sooner).")
@click.option("--batch-size", type=int, default=32, show_default=True,
              help="Images per step (per GPU with several GPUs).")
@click.option("--alpha", type=float, default=0.25, show_default=True, help="MobileNet width multiplier.")
@click.option("--learning-rate", type=float, default=1e-3, show_default=True, help="Adam's initial learning rate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for shuffling, augmentation and the split.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the training summary and history as JSON on stdout.")
@verbose_option
def train(data, out, val_data, val_fraction, epochs, batch_size, alpha, learning_rate, seed, force, as_json):
    """Train the seed's MobileNet live/spoof classifier on aligned crops.

    DATA is an `edgepad extract` output (its Train/ split is used) or a folder holding live/ and spoof/
    (live = class 0, spoof = class 1). Augmentation, ReduceLROnPlateau, EarlyStopping and best-checkpoint
    saving as the seed sets them; several visible GPUs are used together. The .h5 goes straight into
    `edgepad convert` with its default preprocessing ((x - 127.5) / 127.5, RGB).

    \b
    Example:
      edgepad train crops -o pad.h5 --epochs 30 && edgepad convert pad.h5 -o pad_out
    """
    from edgepad.data.train import TrainOptions, train_classifier
    from edgepad.progress import Steps

    steps = Steps(quiet=as_json)
    options = TrainOptions(data=data, out=out, val_data=val_data, val_fraction=val_fraction, epochs=epochs,
                           batch_size=batch_size, alpha=alpha, learning_rate=learning_rate, seed=seed, force=force)

    def log(epoch, logs):
        steps.info(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(logs.items())))

    with steps.step(f"Training MobileNet alpha {alpha:g} on {data}"):
        result = train_classifier(options, log=log)
    for warning in result.warnings:
        steps.warn(warning)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        click.echo(f"{result.out}: {result.epochs_run} epochs, best {result.monitor} {result.best:.4f}; "
                   f"trained on {result.train_images}, validated on {result.val_images or 'nothing'}")


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--stage", type=click.Choice(["keras", "onnx", "caffe", "vim3-emulated", "tflite", "board"]),
              default="keras",
              show_default=True, help="Where the crops are scored. keras: MODEL is the .h5; otherwise MODEL is an "
              "`edgepad convert` output folder (board: the one deployed on --host).")
@click.option("--threshold", type=float, help="Spoof-probability threshold (default: the model card's, else 0.5).")
@click.option("--dev", "dev_data", type=click.Path(path_type=Path),
              help="Development crops: the threshold is fixed at their equal error rate.")
@click.option("--unit", type=click.Choice(["frame", "video"]), default="frame", show_default=True,
              help="A presentation is one crop, or one video (its crops' mean score).")
@click.option("--pairs", type=click.Path(path_type=Path), help="Face verification of an embedding model: LFW's "
              "pairs.txt for DATA in LFW's layout (<name>/<name>_<NNNN>.jpg). An insightface .bin as DATA needs none.")
@click.option("--aligned", is_flag=True, help="--pairs: the images are aligned face crops already (no MTCNN).")
@click.option("--folds", type=int, default=10, show_default=True,
              help="--pairs: k-fold accuracy, each fold judged at the threshold chosen on the others.")
@click.option("--metric", type=click.Choice(["euclidean", "cosine"]), default="euclidean", show_default=True,
              help="--pairs: distance between the L2-normalised embeddings.")
@click.option("--custom-objects", type=click.Path(path_type=Path),
              help="--stage keras: Python file with the model's custom layers (as for `edgepad convert`).")
@click.option("--output-layer", help="--stage keras: cut the .h5 at this layer (as for `edgepad convert`).")
@click.option("--plot", type=click.Path(path_type=Path),
              help="Write a DET plot (APCER vs BPCER) as PNG; with --pairs an ROC plot (TAR vs FAR).")
@click.option("--host", help="--stage board: the board, as [user@]host[:port] (user khadas, port 22 by default).")
@click.option("--identity", type=click.Path(path_type=Path), help="--stage board: SSH private key file.")
@click.option("--known-hosts", type=click.Path(path_type=Path),
              help="--stage board: known_hosts file [default: ~/.ssh/known_hosts].")
@click.option("--trust-new-host", is_flag=True, help="--stage board: accept a host key seen for the first time.")
@click.option("--remote-dir", default="~/edgepad", show_default=True,
              help="--stage board: the deploy folder on the board.")
@click.option("--remote-python", default="python3", show_default=True, help="--stage board: the board's Python.")
@click.option("--board-backend", type=click.Choice(["onnxruntime", "opencv", "ksnn"]),
              help="--stage board: the runtime backend on the board [default: the runtime's choice].")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON on stdout.")
@verbose_option
def evaluate(model, data, stage, threshold, dev_data, unit, pairs, aligned, folds, metric, custom_objects, output_layer,
             plot, host, identity, known_hosts, trust_new_host, remote_dir, remote_python, board_backend, as_json):
    """PAD metrics (ISO/IEC 30107-3) of a classifier on aligned crops, or face verification figures of an
    embedding model on pairs (--pairs, or an insightface .bin as DATA).

    PAD: DATA is an `edgepad extract` output (its Test/ split is used) or a folder holding live/ and spoof/.
    The attack type of each spoof comes from its SiW video name (<subject>-<sensor>-<type>-...: 2 print,
    3 replay). Reports APCER per attack type, APCER = the worst type's, BPCER, and
    ACER = (APCER + BPCER) / 2, at the given threshold or the one where --dev's APCER equals its BPCER.

    Verification: faces found by the runtime's MTCNN and aligned to the ArcFace template (unless --aligned),
    embeddings L2-normalised, distance Euclidean on the unit sphere (or cosine). Reports the best single
    threshold and its accuracy, k-fold accuracy (threshold chosen on the other folds), TAR at FAR 1e-3 and
    1e-2, AUC, and the distances of same and different pairs; --json adds every pair and its distance in
    file order (null when a face is not found: counted as an error).

    \b
    Example:
      edgepad evaluate pad.h5 crops/Test --dev crops/Train --plot det.png
      edgepad evaluate pad_out crops/Test --stage onnx --threshold 0.42
      edgepad evaluate pad_out crops/Test --stage board --host khadas@vim3.local --board-backend ksnn
      edgepad evaluate emb_out lfw/ --pairs lfw/pairs.txt --stage caffe --json
      edgepad evaluate emb.h5 lfw.bin --custom-objects layers.py --output-layer embedding --plot roc.png
    """
    board = None
    if stage == "board":
        board = _board_target(host, identity, known_hosts, trust_new_host, remote_dir, remote_python, board_backend)
    elif host:
        raise UsageError("--host is for --stage board; the other stages run on this machine")
    if pairs is not None or data.suffix.lower() == ".bin":
        return _verify(model, data, stage, pairs, aligned, folds, metric, custom_objects, output_layer, plot,
                       as_json, threshold is not None or dev_data is not None, board)
    from edgepad.data.evaluate import EvaluateOptions, evaluate_model

    if custom_objects is not None or output_layer is not None:
        raise UsageError("--custom-objects and --output-layer are for embedding models (--pairs)")
    options = EvaluateOptions(model=model, data=data, stage=stage, threshold=threshold, dev_data=dev_data,
                              unit=unit, plot=plot, board=board)
    from edgepad.progress import Steps

    with Steps(quiet=as_json).step(f"Scoring crops with {model.name} ({stage})"):
        result = evaluate_model(options)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    _print_metrics(result)


def _verify(model, data, stage, pairs, aligned, folds, metric, custom_objects, output_layer, plot, as_json,
            pad_only, board) -> None:
    from edgepad.data.verify import VerifyOptions, verify_model
    from edgepad.progress import Steps

    if pad_only:
        raise UsageError("--threshold and --dev are PAD options; face verification (--pairs) chooses its "
                         "threshold on the pairs")
    options = VerifyOptions(model=model, data=data, pairs=pairs, stage=stage, aligned=aligned, folds=folds,
                            metric=metric, plot=plot, custom_objects=custom_objects, output_layer=output_layer,
                            board=board)
    with Steps(quiet=as_json).step(f"Embedding faces with {model.name} ({stage})"):
        result = verify_model(options)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    _print_verification(result)


def _print_verification(result) -> None:
    from rich.console import Console
    from rich.table import Table

    m = result.metrics
    same = sum(p.same for p in result.pairs)
    table = Table(title=f"{result.model.name} ({result.stage}) on {result.pairs_source}: {same} same, "
                        f"{len(result.pairs) - same} different pairs", title_justify="left")
    table.add_column("")
    table.add_column("value")
    table.add_row("accuracy (best threshold)", f"{m.accuracy:.2%} at {m.threshold:.4f}")
    table.add_row(f"accuracy ({len(m.folds)}-fold)", f"{m.kfold_accuracy:.2%} ± {m.kfold_std:.2%}")
    for point in m.tar_at_far:
        table.add_row(f"TAR at FAR {point['far_target']:g}", f"{point['tar']:.2%}")
    table.add_row("AUC", f"{m.auc:.4f}")
    for name, stats in (("same", m.positive), ("different", m.negative)):
        value = "-" if stats["mean"] is None else f"{stats['mean']:.4f} ± {stats['std']:.4f}"
        table.add_row(f"distance, {name} pairs", value)
    table.add_row("pairs without a face (errors)", str(m.failures))
    console = Console()
    console.print(table)
    console.print(f"{result.metric} distance between L2-normalised embeddings ({result.embedding_size} values); "
                  f"faces: {result.aligned}")
    if result.plot:
        console.print(f"ROC plot: {result.plot}")


def _board_target(host, identity, known_hosts, trust_new_host, remote_dir, remote_python, board_backend):
    from edgepad.data.board_scorer import BoardTarget
    from edgepad.deploy.pipeline import BoardOptions
    from edgepad.deploy.ssh import SshOptions

    if not host:
        raise UsageError("--stage board: give the board with --host [user@]host[:port]")
    ssh = SshOptions(identity, known_hosts, trust_new_host)
    return BoardTarget(host, BoardOptions(ssh, remote_dir, remote_python), board_backend)


def _print_metrics(result) -> None:
    from rich.console import Console
    from rich.table import Table

    m = result.metrics
    table = Table(title=f"{result.model.name} ({result.stage}) on {result.data}, per {result.unit}",
                  title_justify="left")
    for column in ("", "presentations", "error"):
        table.add_column(column)
    for attack, rate in m.apcer_per_type.items():
        table.add_row(f"APCER {attack}", str(m.counts[attack]), f"{rate:.2%}")
    table.add_row("APCER (worst type)", "", f"{m.apcer_max:.2%}")
    table.add_row("BPCER", str(m.counts["live"]), f"{m.bpcer:.2%}")
    table.add_row("[bold]ACER[/bold]", "", f"[bold]{m.acer:.2%}[/bold]")
    console = Console()
    console.print(table)
    eer = f", dev EER {result.dev_eer:.2%}" if result.dev_eer is not None else ""
    console.print(f"threshold {m.threshold:.4f} ({result.threshold_source}{eer})")
    if result.plot:
        console.print(f"DET plot: {result.plot}")
