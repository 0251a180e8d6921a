"""The whole pipeline's on-board time per frame, ESTIMATED from the toolkit's performance model (never measured).

Each NPU model's report.json holds `vim3_emulated.estimated_board_time` (VeriSilicon's architecture performance
model, printed when the library ran in the emulator at convert time; see convert/vim3/npu_lib/perf_estimate.py);
a PNet compiled per pyramid size holds one per size under `vim3_emulated.sizes["HxW"]`. A frame runs PNet once per
pyramid size, RNet once per PNet candidate, ONet once per RNet candidate and the classifier once per face: those
counts are taken from the host's own pipeline (onnxruntime) on a real frame, so the total is per frame of that
kind. Models without NPU files run on the board's CPU and are not estimated (said so, never counted as zero).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2

from edgepad.convert.report import read_report
from edgepad.errors import InputFileError
from edgepad.runtime.card import ModelCard

NETS = ("pnet", "rnet", "onet", "classifier", "embedding")
NOTE = ("an estimate by VeriSilicon's performance model of the VIM3 NPU at the frequency it assumes, NN/TP "
        "operations only (shader operations such as softmax and the CPU's pre/post-processing are not counted); "
        "not a measurement on a board")


def net_estimates(models_dir: Path) -> dict[str, dict]:
    """model -> {"ms_per_inference": ms or None, "sizes": {"HxW": ms}, "source": ...} for each model in the folder."""
    found = {}
    for name in NETS:
        folder = Path(models_dir) / name
        if not (folder / "edgepad.json").is_file():
            continue
        card = ModelCard.load(folder)
        entry = {"on_npu": card.targets.vim3 is not None, "ms_per_inference": None, "sizes": {}}
        report = folder / "report.json"
        check = read_report(report).check("vim3_emulated") if report.is_file() else None
        emulated = check.to_json() if check is not None else {}
        estimate = emulated.get("estimated_board_time") or {}
        entry["ms_per_inference"] = estimate.get("ms_per_inference")
        entry["source"] = estimate.get("source")
        for size, section in (emulated.get("sizes") or {}).items():
            size_estimate = (section or {}).get("estimated_board_time") or {}
            if size_estimate.get("ms_per_inference") is not None:
                entry["sizes"][size] = size_estimate["ms_per_inference"]
                entry["source"] = entry["source"] or size_estimate.get("source")
        if name == "pnet" and not entry["sizes"] and entry["ms_per_inference"] is not None:
            size = f"{card.input.height}x{card.input.width}"
            entry["sizes"][size] = entry["ms_per_inference"]  # its one NBG's size
        found[name] = entry
    return found


def count_inferences(bundle_dir: Path, image_path: Path) -> dict:
    """How many inferences of each model one frame takes, from the host's float pipeline on that frame (at the
    runtime's default minimum face size: the one a PNet compiled per pyramid size was compiled for, else 40):
    {"pnet": ["HxW", ...], "rnet": n, "onet": n, "classifier": n, "faces": n}."""
    from edgepad.runtime.bundle import load_pipeline
    from edgepad.runtime.detector import DetectorSettings

    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputFileError(f"--estimate-image {image_path}: not an image OpenCV can read (jpg, png)")
    # min face None: the one PNet's NBGs were compiled for, as the runtime's default is
    pipeline = load_pipeline(str(bundle_dir), "onnxruntime", settings=DetectorSettings(min_face_size=None),
                             warn=lambda _message: None)
    calls: dict = {"pnet": [], "rnet": 0, "onet": 0}
    models = {"pnet": pipeline.detector.pnet, "rnet": pipeline.detector.rnet, "onet": pipeline.detector.onet}
    if pipeline.classifier is not None:
        models["classifier"] = pipeline.classifier.model
        calls["classifier"] = 0
    for name, model in models.items():
        model.run = _counting(model.run, name, calls)  # the instance's own run: nothing else changes
    calls["faces"] = len(pipeline.process(image).faces)
    return calls


def _counting(run, name: str, calls: dict):
    def counted(batch):
        if name == "pnet":
            calls[name] += [f"{batch.shape[1]}x{batch.shape[2]}"] * len(batch)
        else:
            calls[name] += len(batch)  # the NPU runs one input at a time
        return run(batch)

    return counted


def pipeline_estimate(bundle_dir: Path, image_path: Path | None = None) -> dict | None:
    """Per model the estimated ms per inference and, with a frame, per frame; None when no model has NPU files."""
    nets = net_estimates(Path(bundle_dir) / "models")
    if not any(entry["on_npu"] for entry in nets.values()):
        return None
    result: dict = {"estimate": True, "note": NOTE, "source": next((e["source"] for e in nets.values() if e["source"]),
                                                                   None),
                    "models": {name: {"on_npu": e["on_npu"], "ms_per_inference": e["ms_per_inference"],
                                      **({"sizes": e["sizes"]} if e["sizes"] else {})} for name, e in nets.items()}}
    if image_path is None or not all((Path(bundle_dir) / "models" / n).is_dir() for n in ("pnet", "rnet", "onet")):
        return result
    calls = count_inferences(bundle_dir, image_path)
    frame: dict = {"image": os.fspath(image_path), "faces": calls.pop("faces"), "models": {}}
    total, not_estimated = 0.0, []
    for name, made in calls.items():
        entry = nets.get(name, {})
        if name == "pnet":
            sizes = made
            per_size = [entry.get("sizes", {}).get(size) for size in sizes]
            known = [ms for ms in per_size if ms is not None]
            row = {"inferences": len(sizes), "sizes": sorted(set(sizes), key=lambda s: -int(s.split("x")[0])),
                   "estimated_ms": round(sum(known), 4) if known else None,
                   "sizes_not_estimated": sorted({s for s, ms in zip(sizes, per_size, strict=True) if ms is None})}
            if not row["sizes_not_estimated"]:
                del row["sizes_not_estimated"]
        else:
            ms = entry.get("ms_per_inference") if entry.get("on_npu") else None
            row = {"inferences": made, "estimated_ms": round(ms * made, 4) if ms is not None else None}
        if row["estimated_ms"] is None or row.get("sizes_not_estimated"):
            not_estimated.append(name)
        total += row["estimated_ms"] or 0.0
        frame["models"][name] = row
    frame["estimated_total_ms"] = round(total, 4)
    frame["not_estimated"] = not_estimated  # on the CPU (no NPU files, or a pyramid size without an NBG)
    result["frame"] = frame
    return result


def describe(estimate: dict) -> list[str]:
    """Lines for `edgepad bundle`'s summary."""
    lines = ["estimated NPU time (VeriSilicon's performance model, an estimate, not a measurement):"]
    for name, entry in estimate["models"].items():
        if not entry["on_npu"]:
            lines.append(f"  {name:<11} on the CPU (no NPU files): not estimated")
        elif entry.get("sizes"):
            lines.append(f"  {name:<11} " + ", ".join(f"{s} {ms:.3f} ms" for s, ms in entry["sizes"].items()))
        elif entry["ms_per_inference"] is not None:
            lines.append(f"  {name:<11} {entry['ms_per_inference']:.3f} ms per inference")
        else:
            lines.append(f"  {name:<11} no performance estimate in its report.json (convert again with --to vim3)")
    frame = estimate.get("frame")
    if frame:
        parts = [f"{name} {row['inferences']}x" + (f" = {row['estimated_ms']:.3f} ms" if row["estimated_ms"]
                                                   is not None else " (CPU, not estimated)")
                 for name, row in frame["models"].items()]
        lines.append(f"  per frame like {Path(frame['image']).name} ({frame['faces']} faces): {', '.join(parts)}; "
                     f"NPU total {frame['estimated_total_ms']:.3f} ms (estimate)"
                     + (f", plus {', '.join(frame['not_estimated'])} not estimated" if frame["not_estimated"] else ""))
    return lines
