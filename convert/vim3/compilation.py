"""What a VIM3 compiler (acuitylite, Khadas' SDK) hands back to the vim3 target."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# edgepad's --quantize -> the toolkit's (quantizer, qtype), the same in acuitylite and Khadas' pegasus. The toolkit
# worker and the pegasus job import nothing from edgepad: they get the pair in their request.
QUANTIZERS = {
    "uint8": ("asymmetric_affine", "uint8"),
    "int8": ("perchannel_symmetric_affine", "int8"),
    "int16": ("dynamic_fixed_point", "int16"),
    "float16": ("float16", "float16"),  # not quantized: pegasus exports it with --dtype float
}


def quantizer_request(scheme: str) -> dict:
    quantizer, qtype = QUANTIZERS[scheme]
    return {"scheme": scheme, "quantizer": quantizer, "qtype": qtype}


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
    input_quantization: dict | None = None  # the input tensors' parameters after forcing them to hold 0..255
    layer_dump: dict | None = None  # every layer's simulated output for the last evaluation input (files)
    simulation_files: dict | None = None  # the evaluation inputs (pixels) and the quantized simulation's outputs
    requantization: dict | None = None  # output scales nudged so the NPU's requantization multipliers are exact
    hybrid: dict | None = None  # mixed precision: {int16_layers, converters}: the layers moved to int16
