"""The health check: the board's runtime computes the bundle's reference inputs; the host compares the outputs.

The reference is the host's onnxruntime outputs in the LOCAL bundle (reference/outputs.npz), not the board's copy.
Float backends (onnxruntime, OpenCV) must match within FLOAT32_ATOL; the NPU's quantized models pass the gates
they were converted with (the card's `targets.vim3.gates`: min_cosine, and min_agreement of the live/spoof or top-1
decisions; defaults QUANTIZED_MIN_COSINE and QUANTIZED_MIN_AGREEMENT).
"""
from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepad.convert.parity import (FLOAT32_ATOL, QUANTIZED_MIN_AGREEMENT, QUANTIZED_MIN_COSINE, compare_outputs,
                                    decision_agreement)

from . import manifest as manifest_io
from .reference import per_input
from .remote import Board

HEALTH_TIMEOUT_S = 600
QUANTIZED_BACKENDS = {"ksnn", "npu", "vim3"}


@dataclass
class HealthResult:
    passed: bool
    backend: str
    outputs: list[dict] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"passed": self.passed, "backend": self.backend, "outputs": self.outputs,
                "error": self.error, "seconds": round(self.seconds, 3)}


def tolerance_for(backend: str) -> tuple[float | None, float | None]:
    """(atol, min_cosine) by precision: quantized NPU models keep direction, float ones keep values."""
    if backend in QUANTIZED_BACKENDS:
        return None, QUANTIZED_MIN_COSINE
    return FLOAT32_ATOL, None


def runtime_command(board: Board, release: str, *args: str) -> list[str]:
    return [board.python, board.release_path(release, "runtime", "vim3_infer.py"),
            "--bundle", board.release_path(release), *args]


def health_check(board: Board, release: str, bundle_dir: Path, backend: str | None = None) -> HealthResult:
    """Run `vim3_infer.py --parity` in the release on the board and compare with the bundle's host outputs."""
    start = time.perf_counter()
    out_name = f".health-{release}.npz"
    argv = runtime_command(board, release, "--parity", board.release_path(release, "reference", "inputs.npz"),
                           "--out", board.path(out_name))
    if backend:
        argv += ["--backend", backend]
    ran = board.connection.run(argv, timeout=HEALTH_TIMEOUT_S)
    said = re.search(r"\(backend (\w+)\)", ran.stderr.decode(errors="replace"))  # the runtime names its choice
    used_backend = backend or (said.group(1) if said else "auto")
    if ran.exit_code != 0:
        lines = ran.stderr.decode(errors="replace").strip().splitlines()
        return HealthResult(False, used_backend, error=f"the runtime exited with {ran.exit_code}: "
                            f"{lines[-1] if lines else 'no message'}", seconds=time.perf_counter() - start)
    buffer = io.BytesIO()
    board.connection.sftp.getfo(board.path(out_name), buffer)
    board.op("remove", path=out_name)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as data:
        board_outputs = {k: data[k] for k in data.files}
    with np.load(Path(bundle_dir) / "reference" / "outputs.npz", allow_pickle=False) as data:
        host_outputs = {k: data[k] for k in data.files}
    cards = manifest_io.load(bundle_dir).models
    result = compare(host_outputs, board_outputs, used_backend, cards)
    result.seconds = time.perf_counter() - start
    return result


def compare(host_outputs: dict[str, np.ndarray], board_outputs: dict[str, np.ndarray], backend: str | None,
            cards: dict | None = None) -> HealthResult:
    """Per model and output: max abs, cosine, top-1 against the host, with the tolerance of the precision the
    model ran at: quantized only on the NPU backend and only when the model has an NPU binary (the runtime runs
    the others, e.g. PNet, on the CPU)."""
    reported = board_outputs.get("__backend__")
    used_backend = str(reported) if reported is not None else (backend or "auto")  # "auto": float tolerance
    rows: list[dict] = []
    errors = []
    models = sorted({key.split("/", 1)[0] for key in host_outputs})
    for model in models:
        card = (cards or {}).get(model, {})
        has_npu_binary = cards is None or "vim3" in card.get("targets", {})
        atol, min_cosine = tolerance_for(used_backend if has_npu_binary else "onnxruntime")
        # a quantized model is held to the gates it was converted with (its card's), decisions included
        gates = card.get("targets", {}).get("vim3", {}).get("gates") or {}
        quantized = min_cosine is not None
        if quantized and gates.get("min_cosine") is not None:
            min_cosine = float(gates["min_cosine"])
        min_agreement = float(gates.get("min_agreement") or QUANTIZED_MIN_AGREEMENT) if quantized else None
        names = [k.split("/", 1)[1] for k in host_outputs if k.startswith(model + "/")]
        missing = [n for n in names if f"{model}/{n}" not in board_outputs]
        if missing:
            errors.append(f"{model}: the board wrote no output {', '.join(missing)}")
            rows += [{"model": model, "output": n, "passed": False, "error": "missing"} for n in missing]
            continue
        reference, candidate = {}, {}
        for name in names:
            ref = host_outputs[f"{model}/{name}"]
            cand = board_outputs[f"{model}/{name}"]
            if cand.size == ref.size and cand.shape != ref.shape:
                cand = cand.reshape(ref.shape)  # e.g. (N, 1, K) stacked vs (N, K) concatenated
            reference[name], candidate[name] = per_input(ref), per_input(cand)
        if any(len(candidate[n]) != len(reference[n]) or candidate[n][0].shape != reference[n][0].shape for n in names):
            errors.append(f"{model}: the board's outputs have other shapes than the host's")
            rows += [{"model": model, "output": n, "passed": False, "error": "shape"} for n in names]
            continue
        parity = compare_outputs(reference, candidate, reference_name="host onnxruntime",
                                 candidate_name=f"board {used_backend}", atol=atol, min_cosine=min_cosine)
        for index, output in enumerate(parity.to_json()["outputs"]):
            row = {"model": model, "output": output["name"], "max_abs": output["max_abs"],
                   "cosine": output["cosine"], "top1_agreement": output["top1_agreement"],
                   "atol": atol, "min_cosine": min_cosine, "passed": output["passed"]}
            if quantized and index == 0 and card:
                agreement, flipped = decision_agreement(reference[output["name"]], candidate[output["name"]], card)
                if agreement is not None:
                    row.update({"decision_agreement": agreement, "min_agreement": min_agreement,
                                "flipped_inputs": flipped})
                    row["passed"] = row["passed"] and agreement >= min_agreement
            rows.append(row)
    passed = bool(rows) and all(r["passed"] for r in rows) and not errors
    return HealthResult(passed, used_backend, rows, error="; ".join(errors) or None)
