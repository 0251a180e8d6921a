"""The health check: the board's runtime computes the bundle's reference inputs; the host compares the outputs.

The reference is the host's onnxruntime outputs in the LOCAL bundle (reference/outputs.npz), not the board's copy.
Float backends (onnxruntime, OpenCV) must match within FLOAT32_ATOL; the NPU's quantized models pass the gates
they were converted with (the card's `targets.vim3.gates`: min_cosine, and min_agreement of the live/spoof or top-1
decisions; defaults QUANTIZED_MIN_COSINE and DEFAULT_MIN_AGREEMENT). It runs on releases/<id> before `current`
moves; every way the runtime can fail (a mismatch, a crash, a hang past the timeout, no output, an output that is
not an npz) is a failed HealthResult.
"""
from __future__ import annotations

import io
import pickle
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepad.convert.heldout import DEFAULT_MIN_AGREEMENT, decision_agreement
from edgepad.convert.parity import FLOAT32_ATOL, QUANTIZED_MIN_COSINE, compare_outputs
from edgepad.runtime.card import ModelCard

from . import manifest as manifest_io
from .reference import TFLITE_REFERENCE, per_input
from .remote import Board

HEALTH_TIMEOUT_S = 300  # a first NPU load on a VIM3 (the driver builds its caches) takes minutes
HEALTH_OUTPUT_MAX_BYTES = 256 << 20  # far above real outputs; a runaway runtime's file is not read into memory
NPU_RUNTIME_BACKENDS = {"ksnn", "npu", "vim3"}  # runtime backends that run the quantized NPU model
# runtime backend -> the card's target it runs quantized (a model without that target runs on the CPU backend)
QUANTIZED_TARGET_OF = {**{backend: "vim3" for backend in NPU_RUNTIME_BACKENDS}, "tflite": "tflite"}
UNREADABLE_OUTPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OSError, EOFError,
                            zipfile.BadZipFile, pickle.UnpicklingError)


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
    if backend in QUANTIZED_TARGET_OF:
        return None, QUANTIZED_MIN_COSINE
    return FLOAT32_ATOL, None


def runtime_command(board: Board, release: str, *args: str) -> list[str]:
    return [board.python, board.release_path(release, "runtime", "vim3_infer.py"),
            "--bundle", board.release_path(release), *args]


def health_check(board: Board, release: str, bundle_dir: Path, backend: str | None = None,
                 timeout: float = HEALTH_TIMEOUT_S) -> HealthResult:
    """Run `vim3_infer.py --parity` in releases/<release> on the board (killed after `timeout` s) and compare
    its outputs with the bundle's host outputs. Connection errors propagate; any other failure is a result."""
    start = time.perf_counter()
    out_name = f".health-{release}.npz"
    argv = runtime_command(board, release, "--parity", board.release_path(release, "reference", "inputs.npz"),
                           "--out", board.path(out_name))
    if backend:
        argv += ["--backend", backend]
    ran = board.op("run", argv=argv, seconds=timeout, expect=out_name, timeout=timeout + 60)
    said = re.search(r"\(backend (\w+)\)", ran["stderr"])  # the runtime names its choice
    used_backend = backend or (said.group(1) if said else "auto")

    def failed(error: str) -> HealthResult:
        return HealthResult(False, used_backend, error=error, seconds=time.perf_counter() - start)

    lines = ran["stderr"].strip().splitlines()
    last = lines[-1] if lines else None
    try:
        if ran["exit_code"] is None:
            said_last = f" (its last message: {last})" if last else " (it printed nothing)"
            return failed(f"the runtime did not finish within {timeout:g} s (--health-timeout) and was stopped"
                          + said_last)
        if ran["exit_code"] != 0:
            return failed(f"the runtime exited with {ran['exit_code']}: {last or 'no message'}")
        if ran["out_size"] is None:
            return failed(f"the runtime exited 0 but wrote no {out_name}")
        if ran["out_size"] > HEALTH_OUTPUT_MAX_BYTES:
            return failed(f"the runtime wrote {ran['out_size'] / 1e6:.0f} MB to {out_name}, not its outputs")
        buffer = io.BytesIO()
        board.connection.sftp.getfo(board.path(out_name), buffer)
    finally:
        board.op("remove", path=out_name)
    try:
        buffer.seek(0)
        with np.load(buffer, allow_pickle=False) as data:
            board_outputs = {k: data[k] for k in data.files}
        with np.load(Path(bundle_dir) / "reference" / "outputs.npz", allow_pickle=False) as data:
            host_outputs = {k: data[k] for k in data.files}
        tflite_reference = Path(bundle_dir) / "reference" / TFLITE_REFERENCE
        if used_backend == "tflite" and tflite_reference.is_file():
            # models with a tflite target are judged against the host's TFLite interpreter, the others (run on the
            # CPU backend) against onnxruntime
            with np.load(tflite_reference, allow_pickle=False) as data:
                host_outputs.update({k: data[k] for k in data.files})
        cards = manifest_io.load(bundle_dir).models
        result = compare(host_outputs, board_outputs, used_backend, cards)
    except UNREADABLE_OUTPUT_ERRORS as error:
        return failed(f"the runtime's {out_name} is not an npz of its outputs ({type(error).__name__}: {error})")
    result.seconds = time.perf_counter() - start
    return result


def compare(host_outputs: dict[str, np.ndarray], board_outputs: dict[str, np.ndarray], backend: str | None,
            cards: dict[str, ModelCard] | None = None) -> HealthResult:
    """Per model and output: max abs, cosine, top-1 against the host, with the tolerance of the precision the
    model ran at: quantized only on the NPU backend and only when the model has an NPU binary (the runtime runs
    the others, e.g. PNet, on the CPU)."""
    reported = board_outputs.get("__backend__")
    used_backend = str(reported) if reported is not None else (backend or "auto")  # "auto": float tolerance
    rows: list[dict] = []
    errors = []
    models = sorted({key.split("/", 1)[0] for key in host_outputs})
    for model in models:
        quantized_target = QUANTIZED_TARGET_OF.get(used_backend)
        runs_quantized = quantized_target and (cards is None or (
            model in cards and quantized_target in cards[model].targets))
        atol, min_cosine = tolerance_for(used_backend if runs_quantized else "onnxruntime")
        # a quantized model is held to the gates it was converted with (its card's), decisions included
        card = (cards or {}).get(model)
        entry = dict(card.targets.items()).get(quantized_target) if card is not None and quantized_target else None
        gates = (entry.to_dict() if hasattr(entry, "to_dict") else entry or {}).get("gates") or {}
        if runs_quantized and gates.get("min_cosine") is not None:
            min_cosine = float(gates["min_cosine"])
        min_agreement = float(gates.get("min_agreement") or DEFAULT_MIN_AGREEMENT) if runs_quantized else None
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
        on_tflite = runs_quantized and used_backend == "tflite"
        reference_name = "host TFLite interpreter" if on_tflite else "host onnxruntime"
        parity = compare_outputs(reference, candidate, reference_name=reference_name,
                                 candidate_name=f"board {used_backend}", atol=atol, min_cosine=min_cosine)
        for index, output in enumerate(parity.to_json()["outputs"]):
            row = {"model": model, "output": output["name"], "max_abs": output["max_abs"],
                   "cosine": output["cosine"], "top1_agreement": output["top1_agreement"],
                   "atol": atol, "min_cosine": min_cosine, "passed": output["passed"]}
            if runs_quantized and index == 0 and card is not None:
                name = output["name"]
                kept = decision_agreement(np.stack(reference[name]), np.stack(candidate[name]), card,
                                          [str(i) for i in range(len(reference[name]))])
                if kept.share is not None:
                    row.update({"decision_agreement": kept.share, "min_agreement": min_agreement,
                                "flipped_inputs": [int(i) for i in kept.flipped]})
                    row["passed"] = row["passed"] and kept.share >= min_agreement
            rows.append(row)
    passed = bool(rows) and all(r["passed"] for r in rows) and not errors
    return HealthResult(passed, used_backend, rows, error="; ".join(errors) or None)
