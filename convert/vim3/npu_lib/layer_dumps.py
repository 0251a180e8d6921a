"""Where the library and the toolkit's simulation part: every node's output, dumped by the library, against the same
layer of the simulation, on one input both computed.

Used only when they disagree, on the input where they disagree most. The library is rebuilt in a scratch folder
with the case's tensors made non-virtual
(`VNN_APP_DEBUG`), so ovxlib can dump each node's output (`EDGEPAD_NPU_DUMP_DIR`, see edgepad_npu.c); nodes and
toolkit layers share their number (the case's node uid is the suffix of the layer id).
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

DUMP_NAME = re.compile(r"_uid_(\d+)_t_0_s_([\d_]+)\.txt$")
LAYERS_SHOWN = 12


def compare_layer_dumps(out_dir: Path, case: str, target: str, pid: int, sdk_dir: Path, x_nchw: np.ndarray,
                        layer_dump: dict, log: Path, index: int = 0, source: str = "") -> dict:
    """Per layer in execution order: cosine and max abs difference (in the layer's quantization steps) of the library
    against the simulation, the share of values that differ, and the first layer that differs at all."""
    from .emulated import run_library
    from .library import build_host_library

    with tempfile.TemporaryDirectory(prefix="edgepad-npu-dump-") as work:
        work = Path(work)
        for path in Path(out_dir).iterdir():
            if path.is_file() and (path.name.startswith("vnn_") or path.name == f"{case}.export.data"):
                shutil.copy2(path, work / path.name)
        header = work / f"vnn_{case}.h"
        header.write_text(re.sub(r"#define VNN_APP_DEBUG \(FALSE\)", "#define VNN_APP_DEBUG (TRUE)",
                                 header.read_text()))
        build = build_host_library(work, case, target, pid, sdk_dir, log.with_suffix(".build.log"))
        dumps = work / "dumps"
        dumps.mkdir()
        run_library(build.library, work / f"{case}.export.data", [x_nchw], log,
                    env={"EDGEPAD_NPU_DUMP_DIR": str(dumps)})
        library_layers = {}
        for path in dumps.glob("*.txt"):
            match = DUMP_NAME.search(path.name)
            if match:
                library_layers[int(match.group(1))] = np.loadtxt(path, dtype=np.float64).ravel()
    return dict(_compare(library_layers, layer_dump, index), input=source or f"emulated input {index}")


def _compare(library_layers: dict[int, np.ndarray], layer_dump: dict, index: int) -> dict:
    """`index`: which of the dumped simulation inputs the library ran (the simulation kept the last few)."""
    layers = json.loads(Path(layer_dump["layers"]).read_text())["layers"]
    rows = []
    with np.load(layer_dump["arrays"]) as simulated:
        for layer in layers:
            uid = re.search(r"_(\d+)$", layer["lid"])
            key = f"{index}_{layer['key']}"
            if uid is None or int(uid.group(1)) not in library_layers or key not in simulated.files:
                continue
            got = library_layers[int(uid.group(1))]
            row = _row(layer, _values(simulated[key], layer.get("quantization") or {}), got)
            if row is not None:
                rows.append(row)
    first = next((r for r in rows if r["differing"] > 0), None)
    beyond_one = next((r for r in rows if r["max_abs_steps"] is not None and r["max_abs_steps"] > 1.01), None)
    shown = rows[:LAYERS_SHOWN] + ([rows[-1]] if len(rows) > LAYERS_SHOWN else [])
    return {"layers_compared": len(rows), "first_differing": first, "first_beyond_one_step": beyond_one,
            "layers": shown}


def _values(stored: np.ndarray, params: dict) -> np.ndarray:
    """The simulation's stored integers back to the values they stand for."""
    if stored.dtype.kind == "i" and params.get("scale"):
        return (stored.astype(np.float64) - float(params.get("zero_point", 0))) * float(params["scale"])
    if stored.dtype.kind == "i" and params.get("fl") is not None:
        return stored.astype(np.float64) * 2.0 ** -float(params["fl"])
    return stored.astype(np.float64)


def _row(layer: dict, simulated: np.ndarray, got: np.ndarray) -> dict | None:
    if simulated.size != got.size:
        return None
    params = layer.get("quantization") or {}
    step = float(params["scale"]) if params.get("scale") else (2.0 ** -float(params["fl"]) if params.get("fl")
                                                                is not None else None)
    # the toolkit keeps NHWC, ovxlib dumps WHCN (NCHW in memory): take the layout that matches
    candidates = [simulated.ravel()]
    if simulated.ndim == 4:
        candidates.append(simulated.transpose(0, 3, 1, 2).ravel())
    best = None
    for candidate in candidates:
        diff = np.abs(candidate - got)
        norm = np.linalg.norm(candidate) * np.linalg.norm(got)
        cosine = float(np.dot(candidate, got) / norm) if norm else float(np.array_equal(candidate, got))
        tolerance = 0.5 * step if step else 1e-6 * max(1.0, float(np.abs(candidate).max()))
        entry = {"layer": layer["lid"], "op": layer["op"], "cosine": cosine,
                 "max_abs_steps": float(diff.max() / step) if step else None, "max_abs": float(diff.max()),
                 "differing": float(np.mean(diff > tolerance))}
        if best is None or entry["cosine"] > best["cosine"]:
            best = entry
    return best
