"""MTCNN for the VIM3 NPU: `edgepad models detector --to vim3 --calibration DIR`.

RNet and ONet are compiled once (their inputs are fixed: 24x24 and 48x48 crops). PNet is fully convolutional and
the NPU needs static shapes, so it is compiled once per pyramid size of the camera's frame size(s) at the minimum
face size, by the same scale rule the runtime uses (runtime/detector.py: pyramid_sizes); its card lists them under
`targets.vim3.sizes` {"HxW": entry}, which the ksnn backend reads (a size without an NBG runs on the CPU, with a note).

Calibration comes from real frames run through the float detector: each photo of --calibration is brought to
each frame size (scaled to cover it, centre cut), the float detector (onnxruntime on the cached float nets) runs
on it, and every net is calibrated with what it was given there: PNet with the pyramid images of its size, RNet
and ONet with the candidate crops. Crops of one frame go into one sub-folder, so the vim3 target holds whole frames
out for its evaluation (heldout.split_held_out), never a near copy of a calibration crop.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgepad.errors import InputFileError, UsageError
from edgepad.hashing import sha256_file
from edgepad.progress import Steps
from edgepad.runtime.card import ModelCard, NpuInput, Vim3Entry
from edgepad.runtime.detector import DEFAULT_MIN_FACE_SIZE, DetectorSettings, MtcnnDetector, pyramid_sizes
from edgepad.staging import staged_output_dir

from .mtcnn_keras import NET_NAMES, build_net, save_quietly
from .mtcnn_models import DETECTOR_TARGETS, MTCNN_MEAN, MTCNN_STD, PNET_EXPORT_SIZE, detector_models, write_open_onnx
from .parity import QUANTIZED_MIN_COSINE
from .report import TargetReport, read_report, write_report

# (width, height) of a VGA and a 720p camera: the sizes `--frame-size` defaults to
DEFAULT_FRAME_SIZES = ((640, 480), (1280, 720))
CROPS_PER_FRAME = 24  # RNet/ONet calibration crops kept per frame, spread over its candidates (faces and not)
NPU_DETECTOR_TARGETS = (*DETECTOR_TARGETS, "vim3")  # the CPU files stay: a size without an NBG runs on them
# PNet's card input (its model.onnx, 48x48) is what a bundle's reference inputs and deploy's health check feed it:
# compiled too, so the health check runs PNet on the NPU (calibrated with whole frames at that size)
CHECK_SIZE = (PNET_EXPORT_SIZE, PNET_EXPORT_SIZE)


@dataclass
class NpuDetectorOptions:
    out: Path
    calibration: Path
    frame_sizes: tuple[tuple[int, int], ...] = DEFAULT_FRAME_SIZES  # (width, height)
    min_face_size: float = DEFAULT_MIN_FACE_SIZE
    quantize: str = "uint8"
    calibration_count: int = 64
    min_cosine: float = QUANTIZED_MIN_COSINE
    force: bool = False


def parse_frame_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480); UsageError naming the option and the fix."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not match or min(int(match.group(1)), int(match.group(2))) < 12:
        raise UsageError(f"--frame-size {text}: give the camera's frame size as WIDTHxHEIGHT, e.g. 640x480 "
                         "(each at least 12 px, PNet's window)")
    return int(match.group(1)), int(match.group(2))


def pnet_sizes(frame_sizes, min_face_size: float,
               scale_factor: float = DetectorSettings().scale_factor) -> list[tuple[int, int]]:
    """Every (H, W) PNet sees on frames of these (width, height) sizes, largest first: one NBG each."""
    if not min_face_size > 0:
        raise UsageError(f"--min-face-size {min_face_size:g}: give the smallest face to find in pixels, e.g. 40")
    sizes: set[tuple[int, int]] = set()
    for width, height in frame_sizes:
        found = pyramid_sizes(height, width, min_face_size, scale_factor)
        if not found:
            raise UsageError(f"--frame-size {width}x{height}: no face of --min-face-size {min_face_size:g} px fits "
                             "in it; give a smaller --min-face-size or a larger frame size")
        sizes.update(found)
    return sorted(sizes, key=lambda hw: (-hw[0] * hw[1], -hw[0]))


def frame_of(photo: np.ndarray, width: int, height: int) -> np.ndarray:
    """The photo as a camera of this frame size would show it: scaled to cover the frame, centre cut."""
    h, w = photo.shape[:2]
    scale = max(width / w, height / h)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    scaled = cv2.resize(photo, size, interpolation=interpolation)
    top, left = (scaled.shape[0] - height) // 2, (scaled.shape[1] - width) // 2
    return np.ascontiguousarray(scaled[top:top + height, left:left + width])


class RecordingModel:
    """Stands between the float detector and one of its nets: runs it and keeps every batch it was given."""

    def __init__(self, model):
        self.model, self.card, self.name = model, model.card, model.name
        self.output_names = model.output_names
        self.batches: list[np.ndarray] = []

    def run(self, batch: np.ndarray) -> dict:
        self.batches.append(np.array(batch, np.float32))
        return self.model.run(batch)

    def fixed_input_sizes(self):
        return self.model.fixed_input_sizes()


@dataclass
class CalibrationSet:
    folder: Path  # pnet/<HxW>/<frame>.png, rnet/<frame>/<i>.png, onet/<frame>/<i>.png
    frames: int
    faces: int  # what the float detector found in all frames
    counts: dict  # net -> images written (PNet: per size)


def write_calibration(photos: Path, frame_sizes, min_face_size: float, folder: Path, float_dir: Path,
                      steps: Steps, check_size: tuple[int, int] | None = None) -> CalibrationSet:
    """Run the float detector over every photo at every frame size and write what each net saw, as pixels;
    `check_size`: PNet's health-check size too, from each frame scaled down to it."""
    from edgepad.runtime.backends import cpu_backend, load_model

    from .parity_inputs import image_files, read_image

    files = image_files(photos, "--calibration")
    nets = {net: RecordingModel(load_model(str(float_dir / net), cpu_backend())) for net in NET_NAMES}
    detector = MtcnnDetector(nets["pnet"], nets["rnet"], nets["onet"],
                             DetectorSettings(min_face_size=min_face_size))
    counts: dict = {"pnet": {}, "rnet": 0, "onet": 0}
    frames = faces = 0
    with steps.step(f"Running the float detector on {len(files)} photo(s) at {len(frame_sizes)} frame size(s) "
                    "for calibration"):
        for index, path in enumerate(files):
            photo = read_image(path, "--calibration")
            if photo.ndim == 2 or photo.shape[2] != 3:
                photo = cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR if photo.ndim == 2 else cv2.COLOR_BGRA2BGR)
            for width, height in frame_sizes:
                for recorder in nets.values():
                    recorder.batches.clear()
                frame = frame_of(photo, width, height)
                faces += len(detector.detect(frame))
                frames += 1
                stem = f"f{index:03d}_{width}x{height}"
                if check_size is not None:
                    small = cv2.resize(frame, check_size[::-1], interpolation=cv2.INTER_AREA)
                    key = f"{check_size[0]}x{check_size[1]}"
                    cv2.imwrite(str(_mkdir(folder / "pnet" / key) / f"{stem}.png"), small)
                    counts["pnet"][key] = counts["pnet"].get(key, 0) + 1
                for batch in nets["pnet"].batches:
                    key = f"{batch.shape[1]}x{batch.shape[2]}"
                    _write_pixels(folder / "pnet" / key / f"{stem}.png", batch[0], detector)
                    counts["pnet"][key] = counts["pnet"].get(key, 0) + 1
                for net in ("rnet", "onet"):
                    if not nets[net].batches:  # no candidate reached this net in this frame
                        continue
                    crops = np.concatenate(nets[net].batches)
                    keep = np.unique(np.linspace(0, len(crops) - 1, min(len(crops), CROPS_PER_FRAME)).astype(int))
                    for i in keep:
                        _write_pixels(folder / net / stem / f"{i:04d}.png", crops[i], detector)
                    counts[net] += len(keep)
    for net in ("rnet", "onet"):
        if not counts[net]:
            raise InputFileError(f"--calibration {photos}: the float detector gave {net.upper()} no candidate in "
                                 f"{frames} frame(s); give photos with faces of at least --min-face-size "
                                 f"{min_face_size:g} px")
    return CalibrationSet(folder, frames, faces, counts)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_pixels(path: Path, normalised: np.ndarray, detector: MtcnnDetector) -> None:
    """A net's normalised input back to the pixels it came from (exact: they were integers), as a BGR PNG."""
    pixels = np.clip(np.rint(normalised * detector.std + detector.mean), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR) if detector.rgb else pixels)


def build_npu_detector(options: NpuDetectorOptions, steps: Steps | None = None) -> dict:
    """OUT/{pnet,rnet,onet}/ with NPU files (all or nothing); returns a summary (sizes, NBG count and bytes,
    compile time and figures per net)."""
    import time

    from .pipeline import ConvertOptions, convert_model

    steps = steps or Steps(quiet=True)
    if options.quantize == "auto":
        raise UsageError("--quantize auto: choose one scheme for the detector (uint8, int8, int16 or float16)")
    if options.calibration_count < 1:
        raise UsageError(f"--calibration-count {options.calibration_count}: must be at least 1")
    from .parity_inputs import image_files

    pyramid = pnet_sizes(options.frame_sizes, options.min_face_size)
    image_files(options.calibration, "--calibration")  # a folder with images, before any work
    check = [] if CHECK_SIZE in pyramid else [CHECK_SIZE]
    sizes = pyramid + check
    keys = [f"{h}x{w}" for h, w in sizes]
    steps.info(f"PNet: {len(pyramid)} pyramid size(s) for frames "
               f"{', '.join(f'{w}x{h}' for w, h in options.frame_sizes)} at min face {options.min_face_size:g} px: "
               f"{', '.join(keys[:len(pyramid)])}"
               + (f", and {keys[-1]} for the bundle's health check" if check else "")
               + f"; {len(sizes) + 2} NBGs in all with RNet and ONet")
    float_dir = detector_models(steps=steps)
    summary: dict = {"frame_sizes": [f"{w}x{h}" for w, h in options.frame_sizes],
                     "min_face_size": options.min_face_size, "quantize": options.quantize,
                     "pnet_sizes": keys[:len(pyramid)], "pnet_check_size": keys[-1] if check else None, "nets": {}}
    with staged_output_dir(options.out, options.force) as work, \
            tempfile.TemporaryDirectory(prefix="edgepad-mtcnn-npu-") as scratch_name:
        scratch = Path(scratch_name)
        calibration = write_calibration(options.calibration, options.frame_sizes, options.min_face_size,
                                        scratch / "calibration", float_dir, steps, CHECK_SIZE if check else None)
        summary["calibration"] = {"frames": calibration.frames, "faces_found_by_float": calibration.faces,
                                  "images": calibration.counts}

        def convert(net: str, out: Path, calibration_dir: Path, targets, size=None, name=None):
            h5 = scratch / f"{name or net}.h5"
            save_quietly(build_net(net, size, name=name), h5)
            return convert_model(ConvertOptions(
                model=h5, out=out, targets=targets, mean=(MTCNN_MEAN,), std=(MTCNN_STD,), channel_order="rgb",
                quantize=options.quantize, calibration=calibration_dir, calibration_count=options.calibration_count,
                min_cosine=options.min_cosine, force=True), Steps(quiet=steps.quiet))  # its own timings

        for net in ("rnet", "onet"):
            steps.info(f"{net.upper()}: compiling for the NPU")
            start = time.perf_counter()
            convert(net, work / net, calibration.folder / net, NPU_DETECTOR_TARGETS)
            write_open_onnx(net, work / net)
            summary["nets"][net] = _net_summary(work / net, time.perf_counter() - start)

        steps.info("PNet: the CPU model (any size), then one NBG per pyramid size")
        start = time.perf_counter()
        convert_model(ConvertOptions(model=_pnet_h5(scratch), out=work / "pnet", targets=DETECTOR_TARGETS,
                                     mean=(MTCNN_MEAN,), std=(MTCNN_STD,), channel_order="rgb", force=True), steps)
        write_open_onnx("pnet", work / "pnet")
        entries, reports, seconds = {}, {}, {}
        for index, ((h, w), key) in enumerate(zip(sizes, keys, strict=True), start=1):
            steps.info(f"PNet size {index}/{len(sizes)}: {key} ({calibration.counts['pnet'].get(key, 0)} "
                       "calibration images)")
            size_start = time.perf_counter()
            size_out = scratch / f"pnet-{key}"
            convert("pnet", size_out, calibration.folder / "pnet" / key, ("onnx", "vim3"), size=(h, w),
                    name=f"pnet{h}x{w}")
            entries[key], reports[key] = _take_size(size_out, work / "pnet", key)
            seconds[key] = round(time.perf_counter() - size_start, 1)
        _write_pnet_card(work / "pnet", entries, reports, options, keys[:len(pyramid)])
        summary["nets"]["pnet"] = _net_summary(work / "pnet", time.perf_counter() - start, seconds)
    summary["folder"] = str(options.out)
    summary["nbgs"] = sum(n["nbgs"] for n in summary["nets"].values())
    summary["nbg_bytes"] = sum(n["nbg_bytes"] for n in summary["nets"].values())
    summary["vim3_bytes"] = sum(n["vim3_bytes"] for n in summary["nets"].values())
    return summary


def _pnet_h5(scratch: Path) -> Path:
    path = scratch / "pnet.h5"
    save_quietly(build_net("pnet", PNET_EXPORT_SIZE), path)
    return path


def _prefixed(value, old: str, new: str):
    """Every string (and dict key) starting with `old` in a card/report section, starting with `new` instead."""
    if isinstance(value, str):
        return new + value[len(old):] if value.startswith(old) else value
    if isinstance(value, dict):
        return {_prefixed(k, old, new): _prefixed(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_prefixed(v, old, new) for v in value]
    return value


def _take_size(size_out: Path, pnet_dir: Path, key: str) -> tuple[Vim3Entry, dict]:
    """Move one size's vim3/ folder to pnet/vim3/<HxW>/; its card entry and report sections with the paths moved."""
    card = ModelCard.load(size_out)
    (pnet_dir / "vim3").mkdir(exist_ok=True)
    shutil.move(str(size_out / "vim3"), str(pnet_dir / "vim3" / key))
    entry = Vim3Entry.from_dict(_prefixed(card.targets.vim3.to_dict(), "vim3/", f"vim3/{key}/"))
    entry.nb = entry.nbg
    entry.library = entry.npu_library.library if entry.npu_library is not None else None
    if entry.npu_input is not None and entry.npu_input.shape is None:
        entry.npu_input.shape = list(entry.input.shape or [])
    report = read_report(size_out / "report.json").to_json()
    sections = {name: _prefixed(report[name], "vim3/", f"vim3/{key}/") for name in ("vim3", "vim3_emulated")
                if name in report}
    return entry, sections


def _write_pnet_card(pnet_dir: Path, entries: dict, reports: dict, options: NpuDetectorOptions,
                     pyramid: list[str]) -> None:
    """targets.vim3 of PNet: what every size shares, and `sizes`; report.json's vim3 sections per size."""
    card = ModelCard.load(pnet_dir)
    first = next(iter(entries.values()))
    card.targets.vim3 = Vim3Entry(
        backend=first.backend, toolkit=first.toolkit, toolkit_version=first.toolkit_version, board=first.board,
        target=first.target, pid=first.pid, nbg_format=first.nbg_format, quantize=first.quantize,
        quantizer=first.quantizer, layout=first.layout, channel_order=first.channel_order, ksnn=first.ksnn,
        npu_input=NpuInput(values="pixels", range=[0, 255], layout="nchw", channel_order=first.channel_order),
        gates=first.gates, sizes=entries)
    card.mtcnn.frame_sizes = [f"{w}x{h}" for w, h in options.frame_sizes]
    card.mtcnn.min_face_size = options.min_face_size
    card.mtcnn.scale_factor = DetectorSettings().scale_factor
    card.mtcnn.pyramid_sizes = pyramid
    card.sha256 = {p.relative_to(pnet_dir).as_posix(): sha256_file(p) for p in sorted(pnet_dir.rglob("*"))
                   if p.is_file() and p.name not in ("edgepad.json", "report.json")}
    card.save(pnet_dir)
    report_path = pnet_dir / "report.json"
    report = read_report(report_path)
    for name in ("vim3", "vim3_emulated"):
        per_size = {key: sections[name] for key, sections in reports.items() if name in sections}
        passed = all(section.get("passed", True) for section in per_size.values())
        report.targets.append(TargetReport(name, {"passed": passed}, details={"sizes": per_size}))
    write_report(report_path, report)


def _net_summary(folder: Path, seconds: float, per_size: dict | None = None) -> dict:
    """NBG count and bytes, what the NPU files take, compile time, and the figures against float."""
    nbgs = sorted((folder / "vim3").rglob("*.nb"))
    report = read_report(folder / "report.json").to_json()
    summary = {"nbgs": len(nbgs), "nbg_bytes": sum(p.stat().st_size for p in nbgs),
               "vim3_bytes": sum(p.stat().st_size for p in (folder / "vim3").rglob("*") if p.is_file()),
               "seconds": round(seconds, 1)}
    if per_size is not None:
        summary["seconds_per_size"] = per_size
        summary["figures"] = {key: _figures(report["vim3"]["sizes"][key], report["vim3_emulated"]["sizes"][key])
                              for key in report["vim3"]["sizes"]}
    else:
        summary["figures"] = _figures(report["vim3"], report["vim3_emulated"])
    return summary


def _figures(vim3: dict, emulated: dict) -> dict:
    return {"simulation_cosine": vim3.get("cosine"), "simulation_cosine_min": vim3.get("cosine_min"),
            "library_cosine": emulated.get("cosine"), "library_max_abs": emulated.get("max_abs"),
            "evaluation_inputs": len(vim3.get("eval_sources") or [])}
