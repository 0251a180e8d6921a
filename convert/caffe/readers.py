"""Which Caffe readers take each layer type edgepad writes: BVLC Caffe (the reference implementation), OpenCV 4's
Caffe importer (cv2.dnn.readNetFromCaffe, what the caffe target is checked with), and the VIM3 NPU toolkit's
CaffeLoader (acuitylite; Khadas' SDK imports Caffe the same way).

"yes" for OpenCV is checked by this project's tests (each handler's tiny model runs in OpenCV); the toolkit column
is what acuitylite 6.57.1 did with those tiny models."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Readers:
    bvlc: bool
    opencv: bool
    toolkit: str  # "yes", or what it does instead


# The toolkit column was measured with acuitylite 6.57.1 on each handler's tiny model (tests/test_caffe_handlers.py
# CASES) against onnxruntime, 2026-12; "yes" is within 1e-6 of onnxruntime (Exp: relative 1e-7).
MISREAD = "misreads it"
LAYER_READERS: dict[str, Readers] = {
    "Input": Readers(True, True, "yes"),
    "Convolution": Readers(True, True, "yes"),
    "Deconvolution": Readers(True, True, "failed to import a Deconvolution followed by Slice crops"),
    "InnerProduct": Readers(True, True, "yes"),
    "Pooling": Readers(True, True, "yes"),
    "ReLU": Readers(True, True, "yes"),
    "PReLU": Readers(True, True, "yes"),
    "Sigmoid": Readers(True, True, "yes"),
    "TanH": Readers(True, True, "yes"),
    "Softmax": Readers(True, True, "yes"),
    "Scale": Readers(True, True, "yes"),
    "Eltwise": Readers(True, True, "yes (SUM with coefficients, PROD)"),
    "Concat": Readers(True, True, "yes"),
    "Slice": Readers(True, True, "yes (two-way; it mis-wires three-way Slices)"),
    "Silence": Readers(True, True, "yes"),
    "Reshape": Readers(True, True, "yes"),
    "Flatten": Readers(True, True, "fails on the open batch dimension"),
    "LRN": Readers(True, True, "yes (with k = 1, as edgepad writes it)"),
    "ELU": Readers(True, True, "yes with alpha 1 (it ignores other alphas; edgepad writes only alpha 1)"),
    "Exp": Readers(True, True, "yes"),
    "BNLL": Readers(True, True, f"{MISREAD} (Softplus off by up to 9.3 on inputs within +-9)"),
    "Power": Readers(True, True, f"{MISREAD} (Sqrt off by 6.2; it also ignores scale and shift)"),
    "ReLU6": Readers(False, True, f"{MISREAD} as a plain ReLU"),
    "Permute": Readers(False, True, "yes"),
    "Normalize": Readers(False, True, "yes (across_spatial false, channel_shared)"),
}


def reader_warnings(layer_types) -> list[str]:
    """One line per layer type some reader does not take as written: not BVLC (other Caffe builds refuse the
    file) or misread by the NPU toolkit's CaffeLoader."""
    warnings = []
    for layer_type in sorted(set(layer_types)):
        readers = LAYER_READERS.get(layer_type)
        if readers is None or (readers.bvlc and not readers.toolkit.startswith(MISREAD)):
            continue
        bvlc = "" if readers.bvlc else ", which is not a BVLC Caffe layer"
        warnings.append(f"model.prototxt uses {layer_type}{bvlc}: OpenCV 4 reads it; the VIM3 toolkit's CaffeLoader "
                        f"{readers.toolkit}. For the NPU, convert from ONNX (--to vim3), not from this Caffe file")
    return warnings
