"""`edgepad run`: detect, align and classify faces on the host with the board's runtime code."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from edgepad.commands.options import verbose_option
from edgepad.errors import UsageError


@click.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--bundle", type=click.Path(path_type=Path), help="Bundle folder (models/pnet, rnet, onet, classifier). "
              "Default: the detector from the host cache, no classifier (live is null).")
@click.option("--classifier", type=click.Path(path_type=Path), help="Without --bundle: a classifier's "
              "`edgepad convert` output folder, or an embedding model's (its card says task embedding).")
@click.option("--backend", type=click.Choice(["onnxruntime", "opencv", "ksnn", "tflite"]),
              help="Inference backend (default: ksnn for models with NPU files, else onnxruntime). tflite: the "
                   "`--to tflite` model, on Mesa's Teflon NPU delegate where present.")
@click.option("--delegate", type=click.Path(path_type=Path),
              help="With --backend tflite: the Teflon delegate library (default: libteflon.so in the usual folders).")
@click.option("--min-face-size", type=float, help="Smallest face to find, in pixels. Default: the one the bundle's "
              "PNet was compiled for the NPU at (edgepad models detector --to vim3), else 40.")
@click.option("--detect-thresholds", default="0.6,0.7,0.7", show_default=True,
              help="PNet,RNet,ONet face probability thresholds.")
@click.option("--threshold", type=float, help="Spoof decision threshold (default: the classifier's model card).")
@click.option("--gallery", type=click.Path(path_type=Path), help="Embedding model: a folder of enrolled people, one "
              "sub-folder of photos each; adds each face's nearest person and distance.")
@click.option("--match-threshold", type=float, help="With --gallery: a face is its nearest person when closer than "
              "this (default: the embedding model's card, match_threshold).")
@click.option("--repeat", type=int, default=1, show_default=True, help="Run an image N times; timings are medians.")
@click.option("--no-track", is_flag=True, help="Video: detect on every frame instead of tracking between detections.")
@click.option("--redetect-every", type=int, default=15, show_default=True,
              help="Video: frames between full detections.")
@click.option("--max-frames", type=int, help="Video: stop after N frames.")
@click.option("--draw", type=click.Path(path_type=Path),
              help="Image: write it with boxes, landmarks and scores to this PNG/JPG.")
@click.option("--save-crops", type=click.Path(path_type=Path),
              help="Image: write each face aligned to 112x112 (ArcFace template) as DIR/<image>_<i>.png, e.g. to "
                   "calibrate --to vim3/tflite.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: faces (box, landmarks, score, live, track) and timings_ms.")
@verbose_option
def run(source, bundle, classifier, backend, delegate, min_face_size, detect_thresholds, threshold, gallery,
        match_threshold, repeat, no_track, redetect_every, max_frames, draw, save_crops, as_json):
    """Find faces in SOURCE (an image or a video), align them and score them live or spoof.

    Landmarks are, in order: left eye (on the image's left), right eye, nose, left and right mouth corners.
    With an embedding model (a bundle's models/embedding/, or --classifier EMB) each face gets its
    L2-normalised embedding instead of a live score, and with --gallery its nearest enrolled person.

    \b
    Examples:
      edgepad run photo.jpg --json
      edgepad run photo.jpg --bundle pad_bundle --draw faces.png
      edgepad run clip.mp4 --bundle pad_bundle --json
      edgepad run photo.jpg --classifier emb_out --gallery people/ --json
    """
    from edgepad.progress import Steps
    from edgepad.run_faces import RunOptions, draw_faces, run_faces
    from edgepad.run_faces import save_crops as write_crops
    from edgepad.runtime.frames import is_image_file

    if delegate is not None:
        from edgepad.runtime.backends.tflite_backend import DELEGATE_ENV

        os.environ[DELEGATE_ENV] = str(delegate)  # the backend reads it where the models are loaded
    if save_crops is not None and not is_image_file(source):
        raise UsageError(f"--save-crops {save_crops}: only for images; {source} is read as a video")
    if draw is not None and not is_image_file(source):
        raise UsageError(f"--draw {draw}: only for images; {source} is read as a video")
    options = RunOptions(source=source, bundle=bundle, classifier=classifier, backend=backend,
                         min_face_size=min_face_size, detect_thresholds=_thresholds(detect_thresholds),
                         threshold=threshold, gallery=gallery, match_threshold=match_threshold,
                         repeat=repeat, track=not no_track, redetect_every=redetect_every,
                         max_frames=max_frames)
    steps = Steps(quiet=as_json)
    result = run_faces(options, steps)
    for note in result.notes:
        steps.warn(note)
    if draw is not None:
        draw_faces(result.image, result.frames[0]["faces"], draw)
    if save_crops is not None:
        write_crops(result.image, result.frames[0]["faces"], save_crops, source.stem)
    if as_json:
        click.echo(json.dumps(result.to_json()))
        return
    _print_table(result)


def _thresholds(text: str) -> tuple[float, float, float]:
    from edgepad.runtime.detector import parse_thresholds

    try:
        return parse_thresholds(text)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _print_table(result) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    frames = result.frames if result.kind == "video" else result.frames[:1]
    table = Table(title=f"edgepad run {result.source} ({result.backend})", title_justify="left")
    identities = any("nearest" in face for frame in frames for face in frame["faces"])
    live_columns = result.has_classifier or not result.has_embedder
    columns = ["face", "box (x1, y1, x2, y2)", "score"] + (["live", "decision"] if live_columns else [])
    for column in ((["frame"] if result.kind == "video" else []) + columns
                   + (["identity", "nearest (distance)"] if identities else [])):
        table.add_column(column)
    for frame in frames:
        for index, face in enumerate(frame["faces"]):
            live = face.get("live")
            decision = "-" if live is None else ("[green]live[/green]" if face["is_live"] else "[red]spoof[/red]")
            row = [str(face["track"] if face["track"] is not None else index + 1),
                   ", ".join(f"{v:.0f}" for v in face["box"]), f"{face['score']:.3f}"]
            if live_columns:
                row += ["-" if live is None else f"{live:.3f}", decision]
            if identities:
                row += [face.get("identity") or "unknown", f"{face['nearest']} ({face['distance']:.3f})"]
            table.add_row(*([str(frame.get("frame", ""))] if result.kind == "video" else []) + row)
    console.print(table)
    faces = sum(len(f["faces"]) for f in frames)
    timing = ", ".join(f"{k} {v:.1f} ms" for k, v in result.timings_ms.items())
    note = "" if result.has_classifier or result.has_embedder else "; no classifier: pass --bundle for live scores"
    if result.has_embedder and not identities:
        note += "; embeddings: see --json"
    console.print(f"{faces} face(s); {timing}{note}")

