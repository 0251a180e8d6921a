"""What `edgepad convert` reports: one TargetReport per target, rendered to (and read back from) report.json here.

report.json: {"edgepad_version", "source", <one section per check>, "timings_s", "warnings"}. A check is a target
(onnx, caffe, vim3) or a further check a target made with a section of its own (vim3_emulated; onnx_open, which
the detector build adds). Each section holds the parity figures (`passed`, `max_abs`, `cosine`, `top1_agreement`,
`outputs` per output, as ParityResult.to_json() writes them), the files written and the target's own details.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .parity import ParityResult

PARITY_KEYS = ("reference", "candidate", "inputs", "atol", "min_cosine", "max_abs", "cosine", "cosine_min",
               "top1_agreement", "passed", "outputs")
REPORT_KEYS = ("edgepad_version", "source", "timings_s", "warnings")  # every other top-level key is a check


@dataclass
class TargetReport:
    """One target's result: parity figures against its reference, files written, warnings, further checks."""

    name: str
    parity: dict = field(default_factory=dict)  # ParityResult.to_json() figures; {} when nothing was measured
    files: list[str] = field(default_factory=list)  # relative to the output folder
    details: dict = field(default_factory=dict)  # what else the target reports in its section
    warnings: list[str] = field(default_factory=list)
    checks: list[TargetReport] = field(default_factory=list)  # further checks with a section of their own

    @classmethod
    def from_parity(cls, name: str, parity: ParityResult, **fields) -> TargetReport:
        return cls(name, parity.to_json(), **fields)

    @property
    def passed(self) -> bool:
        return bool(self.parity.get("passed", True))

    @property
    def max_abs(self) -> float | None:
        return self.parity.get("max_abs")

    @property
    def cosine(self) -> float | None:
        return self.parity.get("cosine")

    @property
    def top1_agreement(self) -> float | None:
        return self.parity.get("top1_agreement")

    @property
    def reference(self) -> str | None:
        return self.parity.get("reference")

    def to_json(self) -> dict:
        section = {**self.parity, **self.details}
        section.setdefault("passed", self.passed)
        if self.files:
            section["files"] = list(self.files)
        return section

    @classmethod
    def from_json(cls, name: str, section: dict) -> TargetReport:
        parity = {k: section[k] for k in PARITY_KEYS if k in section}
        details = {k: v for k, v in section.items() if k not in PARITY_KEYS and k != "files"}
        return cls(name, parity, list(section.get("files", [])), details)


@dataclass
class ConvertReport:
    edgepad_version: str
    source: str
    targets: list[TargetReport] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def checks(self) -> list[TargetReport]:
        """Every section: each target, then the further checks it made."""
        result = []
        for target in self.targets:
            result.append(target)
            result.extend(target.checks)
        return result

    def check(self, name: str) -> TargetReport | None:
        return next((c for c in self.checks() if c.name == name), None)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks())

    def to_json(self) -> dict:
        return {"edgepad_version": self.edgepad_version, "source": self.source,
                **{check.name: check.to_json() for check in self.checks()},
                "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()}, "warnings": list(self.warnings)}

    @classmethod
    def from_json(cls, data: dict) -> ConvertReport:
        """A report.json read back; its further checks come back as targets of their own."""
        targets = [TargetReport.from_json(k, v) for k, v in data.items() if k not in REPORT_KEYS]
        return cls(data.get("edgepad_version", ""), data.get("source", ""), targets,
                   dict(data.get("timings_s", {})), list(data.get("warnings", [])))


def write_report(path: Path, report: ConvertReport) -> None:
    path.write_text(json.dumps(report.to_json(), indent=2, default=_json_default) + "\n")


def read_report(path: Path) -> ConvertReport:
    return ConvertReport.from_json(json.loads(Path(path).read_text()))


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
