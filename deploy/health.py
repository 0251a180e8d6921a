"""The health check: the board's runtime computes the bundle's reference inputs; the host compares the outputs.

The reference is in the LOCAL bundle, not the board's copy: the host's onnxruntime outputs (reference/outputs.npz),
and for quantized models the host's run of the same quantized model (the NPU libraries in the emulator,
outputs.ksnn.npz; the TFLite interpreter, outputs.tflite.npz). Float backends (onnxruntime, OpenCV) must match
within FLOAT32_ATOL; quantized models pass the gates they were converted with (the card's `targets.<target>.gates`:
min_cosine, and min_agreement of the live/spoof or top-1 decisions; defaults QUANTIZED_MIN_COSINE and
DEFAULT_MIN_AGREEMENT). A bundle with NPU files is checked on the NPU (its libraries made runnable on the board
first) and then on the CPU. It runs on releases/<id> before `current` moves; every way the runtime can fail (a
mismatch, a crash, a hang past the timeout, no output, an output that is not an npz) is a failed HealthResult.
"""
from __future__ import annotations

import io
import json
import pickle
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepad.convert.heldout import DEFAULT_MIN_AGREEMENT, decision_agreement
from edgepad.convert.parity import FLOAT32_ATOL, QUANTIZED_MIN_COSINE, compare_outputs
from edgepad.runtime.backends import NPU_BACKEND
from edgepad.runtime.card import ModelCard

from . import manifest as manifest_io
from .board_ops import MACHINE_FOLDERS
from .reference import KSNN_REFERENCE, TFLITE_REFERENCE, per_input
from .remote import Board

HEALTH_TIMEOUT_S = 300  # a first NPU load on a VIM3 (the driver builds its caches) takes minutes
HEALTH_OUTPUT_MAX_BYTES = 256 << 20  # far above real outputs; a runaway runtime's file is not read into memory
NPU_RUNTIME_BACKENDS = {"ksnn", "npu", "vim3"}  # runtime backends that run the quantized NPU model
# runtime backend -> the card's target it runs quantized (a model without that target runs on the CPU backend)
QUANTIZED_TARGET_OF = {**{backend: "vim3" for backend in NPU_RUNTIME_BACKENDS}, "tflite": "tflite"}
# what a quantized model is judged against when the bundle holds the host's run of the same quantized model
REFERENCE_NAMES = {**{backend: "host emulator (same NPU library)" for backend in NPU_RUNTIME_BACKENDS},
                   "tflite": "host TFLite interpreter"}
UNREADABLE_OUTPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OSError, EOFError,
                            zipfile.BadZipFile, pickle.UnpicklingError)


@dataclass
class HealthResult:
    passed: bool
    backend: str
    outputs: list[dict] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    library: str | None = None  # how the board got its NPU libraries: built | installed | emulator (None: no NPU)
    libraries: dict[str, str] = field(default_factory=dict)  # library (path in the release) -> built|installed|...
    cpu: HealthResult | None = None  # the second run, every model on the CPU backend, after an NPU run

    def to_json(self) -> dict:
        data = {"passed": self.passed, "backend": self.backend, "outputs": self.outputs,
                "error": self.error, "seconds": round(self.seconds, 3)}
        if self.library is not None:
            data["library"], data["libraries"] = self.library, self.libraries
        if self.cpu is not None:
            data["cpu"] = self.cpu.to_json()
        return data


def tolerance_for(backend: str) -> tuple[float | None, float | None]:
    """(atol, min_cosine) by precision: quantized NPU models keep direction, float ones keep values."""
    if backend in QUANTIZED_TARGET_OF:
        return None, QUANTIZED_MIN_COSINE
    return FLOAT32_ATOL, None


def runtime_command(board: Board, release: str, *args: str) -> list[str]:
    return [board.python, board.release_path(release, "runtime", "vim3_infer.py"),
            "--bundle", board.release_path(release), *args]


def npu_models(cards: dict[str, ModelCard]) -> list[str]:
    return sorted(name for name, card in cards.items() if card.targets.vim3 is not None)


def npu_libraries(manifest: manifest_io.Manifest, models: list[str]) -> list[str]:
    """The NPU libraries of those models in the release (models/<model>/.../libnn_*.so, not a per-machine build)."""
    found = []
    for entry in manifest.files:
        parts = entry.path.split("/")
        if (len(parts) >= 4 and parts[0] == "models" and parts[1] in models and parts[-1].startswith("libnn_")
                and parts[-1].endswith(".so") and parts[-2] not in MACHINE_FOLDERS):
            found.append(entry.path)
    return found


def prepare_npu_libraries(board: Board, release: str, libraries: list[str], timeout: float) -> tuple[dict, str | None]:
    """On the board: install, build or take the emulator build of each library (board_ops.op_npu_libraries)."""
    answer = board.op("npu_libraries", release=release, libraries=libraries, seconds=timeout, timeout=timeout + 60)
    return answer["libraries"], answer["error"]


def health_check(board: Board, release: str, bundle_dir: Path, backend: str | None = None,
                 timeout: float = HEALTH_TIMEOUT_S) -> HealthResult:
    """Run `vim3_infer.py --parity` in releases/<release> on the board (killed after `timeout` s) and compare its
    outputs with the bundle's host outputs. Connection errors propagate; any other failure is a result.

    With NPU files in the bundle (and no CPU --backend) the check runs as the release will: its NPU libraries
    made runnable on the board first (built, installed or the emulator build; `library`), the models with NPU
    files on the NPU against the host emulator's outputs of the same libraries (reference/outputs.ksnn.npz) with
    the quantized gates, then a second run of every model on the CPU backend against onnxruntime (`cpu`)."""
    start = time.perf_counter()
    manifest = manifest_io.load(bundle_dir)
    cards = manifest.models
    on_npu = npu_models(cards) if backend is None or backend in NPU_RUNTIME_BACKENDS else []
    library, libraries = None, {}
    if on_npu:
        libraries, error = prepare_npu_libraries(board, release, npu_libraries(manifest, on_npu), timeout)
        kinds = sorted(set(libraries.values()))
        library = kinds[0] if len(kinds) == 1 else ("+".join(kinds) or "none")
        if error:
            return HealthResult(False, backend or NPU_BACKEND, error=f"NPU library: {error}",
                                seconds=time.perf_counter() - start, library=library, libraries=libraries)
    result = parity_run(board, release, bundle_dir, backend, timeout, cards, NPU_BACKEND if on_npu else "auto")
    result.library, result.libraries = library, libraries
    if on_npu and result.passed:
        cpu_backend = "onnxruntime" if "onnxruntime" in board.op("facts").get("backends", []) else "opencv"
        result.cpu = parity_run(board, release, bundle_dir, cpu_backend, timeout, cards)
        if not result.cpu.passed:
            result.passed = False
            result.error = f"on the CPU backend ({cpu_backend}): " + (
                result.cpu.error or "the board's outputs differ from the host's beyond the tolerance")
    result.seconds = time.perf_counter() - start
    return result


def parity_run(board: Board, release: str, bundle_dir: Path, backend: str | None, timeout: float,
               cards: dict[str, ModelCard], expected: str = "auto") -> HealthResult:
    """One `--parity` run on the board (on `backend`, or the runtime's own choice: `expected` until it names it)
    judged against the host."""
    start = time.perf_counter()
    out_name = f".health-{release}.npz"
    argv = runtime_command(board, release, "--parity", board.release_path(release, "reference", "inputs.npz"),
                           "--out", board.path(out_name))
    if backend:
        argv += ["--backend", backend]
    ran = board.op("run", argv=argv, seconds=timeout, expect=out_name, timeout=timeout + 60)
    said = re.search(r"\(backend (\w+)\)", ran["stderr"])  # the runtime names its choice
    used_backend = backend or (said.group(1) if said else expected)
    per_model = re.search(r"backends (\{[^}\n]*\})", ran["stderr"])  # and which backend ran each model
    try:
        model_backends = json.loads(per_model.group(1)) if per_model else None
    except ValueError:
        model_backends = None

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
        host_outputs = load_reference(bundle_dir, "outputs.npz")
        quantized_references = {}
        if used_backend == "tflite":
            # models with a tflite target are judged against the host's TFLite interpreter, the others (run on the
            # CPU backend) against onnxruntime
            quantized_references = load_reference(bundle_dir, TFLITE_REFERENCE)
        elif used_backend in NPU_RUNTIME_BACKENDS:
            # models on the NPU against the host emulator's run of the same libraries, where the bundle has it
            quantized_references = load_reference(bundle_dir, KSNN_REFERENCE)
        result = compare(host_outputs, board_outputs, used_backend, cards, model_backends, quantized_references)
    except UNREADABLE_OUTPUT_ERRORS as error:
        return failed(f"the runtime's {out_name} is not an npz of its outputs ({type(error).__name__}: {error})")
    result.seconds = time.perf_counter() - start
    return result


def load_reference(bundle_dir: Path, name: str) -> dict[str, np.ndarray]:
    path = Path(bundle_dir) / "reference" / name
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def compare(host_outputs: dict[str, np.ndarray], board_outputs: dict[str, np.ndarray], backend: str | None,
            cards: dict[str, ModelCard] | None = None, model_backends: dict[str, str] | None = None,
            quantized_references: dict[str, np.ndarray] | None = None) -> HealthResult:
    """Per model and output: max abs, cosine, top-1 against the host, with the tolerance of the precision the
    model ran at: quantized only on a quantized backend (`model_backends`, as the runtime reported it, else
    `backend` for all) and only when the model has that target's binary (the runtime runs the others, e.g. a PNet
    without NBGs, on the CPU). A quantized model is judged against `quantized_references` (the host's run of the
    same quantized model: the emulator for the NPU, the TFLite interpreter) where they hold it, else against the
    float outputs; a live/spoof (or top-1) classifier also by its decisions at the card's threshold."""
    reported = board_outputs.get("__backend__")
    used_backend = str(reported) if reported is not None else (backend or "auto")  # "auto": float tolerance
    quantized_references = quantized_references or {}
    rows: list[dict] = []
    errors = []
    models = sorted({key.split("/", 1)[0] for key in host_outputs})
    for model in models:
        model_backend = (model_backends or {}).get(model, used_backend)
        quantized_target = QUANTIZED_TARGET_OF.get(model_backend)
        card = (cards or {}).get(model)
        runs_quantized = bool(quantized_target) and (cards is None or (
            card is not None and quantized_target in card.targets))
        atol, min_cosine = tolerance_for(model_backend if runs_quantized else "onnxruntime")
        # a quantized model is held to the gates it was converted with (its card's), decisions included
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
        own_reference = runs_quantized and all(f"{model}/{n}" in quantized_references for n in names)
        source = quantized_references if own_reference else host_outputs
        reference, candidate = {}, {}
        for name in names:
            ref = source[f"{model}/{name}"]
            cand = board_outputs[f"{model}/{name}"]
            if cand.size == ref.size and cand.shape != ref.shape:
                cand = cand.reshape(ref.shape)  # e.g. (N, 1, K) stacked vs (N, K) concatenated
            reference[name], candidate[name] = per_input(ref), per_input(cand)
        if any(len(candidate[n]) != len(reference[n]) or candidate[n][0].shape != reference[n][0].shape for n in names):
            errors.append(f"{model}: the board's outputs have other shapes than the host's")
            rows += [{"model": model, "output": n, "passed": False, "error": "shape"} for n in names]
            continue
        reference_name = (REFERENCE_NAMES.get(model_backend, "host onnxruntime") if own_reference
                          else "host onnxruntime")
        parity = compare_outputs(reference, candidate, reference_name=reference_name,
                                 candidate_name=f"board {model_backend}", atol=atol, min_cosine=min_cosine)
        for index, output in enumerate(parity.to_json()["outputs"]):
            row = {"model": model, "output": output["name"], "backend": model_backend, "reference": reference_name,
                   "max_abs": output["max_abs"], "cosine": output["cosine"], "top1_agreement": output["top1_agreement"],
                   "atol": atol, "min_cosine": min_cosine, "passed": output["passed"]}
            if runs_quantized and index == 0 and card is not None:
                # the decision a user sees: live/spoof at the card's threshold (top-1 for other classifiers)
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
