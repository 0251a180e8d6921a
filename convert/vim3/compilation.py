"""What a VIM3 compiler (acuitylite, Khadas' SDK) hands back to the vim3 target."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class NpuCompilation:
    """What a backend hands back: where the NBG and case are, and the toolkit's own simulations."""

    nbg_dir: Path
    case_dir: Path
    case_name: str
    toolkit: str
    toolkit_version: str | None
    quantizer: str
    float_outputs: dict[str, list[np.ndarray]] | None  # per ONNX output name, per evaluation input
    quantized_outputs: dict[str, list[np.ndarray]] | None
    layers: list[dict] = field(default_factory=list)
    log: str | None = None
    layers_file: str | None = None
