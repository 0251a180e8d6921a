"""Numerical comparison of a converted model against its reference, output by output.

Names first, then shapes, then values (optimum's `_run_validation`): every failing output is collected and
reported at once with its max abs difference, cosine similarity and the tolerance used.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np

from edgepad.errors import ParityError, ShapeError

# Tolerances live here, not as literals in tests or call sites.
FLOAT32_ATOL = 1e-4  # Keras -> ONNX, ONNX -> Caffe: both float32, same arithmetic up to summation order
# The same for deep nets whose outputs are far from unit size (random-weight ImageNet nets: logits up to 1e6):
# max abs difference over the output's largest magnitude
FLOAT32_SCALED_ATOL = 1e-4
QUANTIZED_MIN_COSINE = 0.98  # float -> uint8 NPU model: values move, direction must not
# float -> uint8 NPU model: how far a class probability (a live score) may move on the same input; measured
# 0.07-0.19 on the PAD fixture at cosine ~0.98
QUANTIZED_SCORE_ATOL = 0.2
QUANTIZED_BOX_MIN_IOU = 0.8  # float -> uint8 NPU detector: the same face when boxes overlap at least this much
QUANTIZED_LANDMARK_ATOL_PX = 4.0  # ... and its five landmarks move at most this many pixels


@dataclass
class OutputParity:
    name: str
    shape: list[int]
    max_abs: float
    mean_abs: float
    cosine: float  # mean over the inputs of the per-input cosine similarity
    cosine_min: float
    top1_agreement: float | None  # None unless the output looks like class scores
    passed: bool


@dataclass
class ParityResult:
    """What one step computed against its reference, on `inputs` inputs."""

    reference: str
    candidate: str
    inputs: int
    atol: float | None
    min_cosine: float | None
    outputs: list[OutputParity] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    @property
    def max_abs(self) -> float:
        return max((o.max_abs for o in self.outputs), default=0.0)

    @property
    def cosine(self) -> float:
        return min((o.cosine for o in self.outputs), default=1.0)

    def to_json(self) -> dict:
        top1 = [o.top1_agreement for o in self.outputs if o.top1_agreement is not None]
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "inputs": self.inputs,
            "atol": self.atol,
            "min_cosine": self.min_cosine,
            "max_abs": self.max_abs,
            "cosine": self.cosine,
            "top1_agreement": min(top1) if top1 else None,
            "passed": self.passed,
            "outputs": [asdict(o) for o in self.outputs],
        }

    def raise_if_failed(self, what: str, hint: str = "") -> None:
        failed = [o for o in self.outputs if not o.passed]
        if not failed:
            return
        limits = []
        if self.atol is not None:
            limits.append(f"max abs <= {self.atol:g}")
        if self.min_cosine is not None:
            limits.append(f"cosine >= {self.min_cosine:g}")
        parts = [
            f"output '{o.name}' differs by max abs {o.max_abs:.3g} (cosine {o.cosine:.6f})" for o in failed
        ]
        message = f"{what}: {self.candidate} does not match {self.reference}: " + "; ".join(parts)
        message += f" (tolerance {' and '.join(limits)}, {self.inputs} inputs)"
        if hint:
            message += f"; {hint}"
        raise ParityError(message)


def magnitude_atol(reference: Mapping[str, Sequence[np.ndarray]], atol: float) -> float:
    """`atol` for outputs near unit size, scaled up by the largest magnitude otherwise: float32 rounding error grows
    with the values summed (an unnormalised embedding of magnitude ~10 differs by ~2e-4 between two float32
    runtimes that order their sums differently)."""
    largest = max((float(np.max(np.abs(v))) for values in reference.values() for v in values), default=0.0)
    return atol * max(1.0, largest)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def looks_like_class_scores(shape: Sequence[int]) -> bool:
    """A (batch, classes) output with at least two classes: top-1 agreement means something."""
    return len(shape) == 2 and shape[-1] >= 2


def compare_outputs(
    reference: Mapping[str, Sequence[np.ndarray]],
    candidate: Mapping[str, Sequence[np.ndarray]],
    *,
    reference_name: str,
    candidate_name: str,
    atol: float | None = FLOAT32_ATOL,
    min_cosine: float | None = None,
) -> ParityResult:
    """Compare per-input outputs: `reference[name][i]` is output `name` for input i (batch of 1 each)."""
    if list(reference) != list(candidate):
        raise ShapeError(
            f"{candidate_name} has outputs {list(candidate)} but {reference_name} has {list(reference)}"
        )
    result = ParityResult(reference_name, candidate_name, 0, atol, min_cosine)
    for name in reference:
        ref_list, cand_list = reference[name], candidate[name]
        result.inputs = len(ref_list)
        if len(cand_list) != len(ref_list):
            raise ShapeError(f"output '{name}': {candidate_name} gave {len(cand_list)} results for "
                             f"{reference_name}'s {len(ref_list)} inputs")
        for ref, cand in zip(ref_list, cand_list, strict=True):
            if np.shape(ref) != np.shape(cand):
                raise ShapeError(
                    f"output '{name}': {candidate_name} gives shape {list(np.shape(cand))}, "
                    f"{reference_name} gives {list(np.shape(ref))}"
                )
        ref_all = np.stack([np.asarray(r, np.float64) for r in ref_list])
        cand_all = np.stack([np.asarray(c, np.float64) for c in cand_list])
        diff = np.abs(ref_all - cand_all)
        cosines = [cosine_similarity(r, c) for r, c in zip(ref_all, cand_all, strict=True)]
        shape = list(np.shape(ref_list[0]))
        top1 = None
        if looks_like_class_scores(shape):
            top1 = float(np.mean(ref_all.reshape(len(ref_all), -1, shape[-1]).argmax(-1)
                                 == cand_all.reshape(len(cand_all), -1, shape[-1]).argmax(-1)))
        max_abs = float(diff.max()) if diff.size else 0.0
        cosine = float(np.mean(cosines)) if cosines else 1.0
        passed = bool(np.all(np.isfinite(cand_all)))
        if atol is not None:
            passed = passed and max_abs <= atol
        if min_cosine is not None:
            passed = passed and cosine >= min_cosine
        result.outputs.append(OutputParity(
            name=name,
            shape=shape,
            max_abs=max_abs,
            mean_abs=float(diff.mean()) if diff.size else 0.0,
            cosine=cosine,
            cosine_min=float(np.min(cosines)) if cosines else 1.0,
            top1_agreement=top1,
            passed=passed,
        ))
    return result
