"""Which Caffe readers take each layer type edgepad writes: BVLC Caffe (the reference implementation), OpenCV 4's
Caffe importer (cv2.dnn.readNetFromCaffe, what the caffe target is checked with), and the VIM3 NPU toolkit's
CaffeLoader (acuitylite; Khadas' SDK imports Caffe the same way).

"yes" for OpenCV is checked by this project's tests (each handler's tiny model runs in OpenCV); for the toolkit
"yes" means a test reads a net containing the layer with CaffeLoader and matches onnxruntime, "unmeasured" that
no test has tried it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Readers:
    bvlc: bool
    opencv: bool
    toolkit: str  # "yes", "unmeasured", or what it does instead


LAYER_READERS: dict[str, Readers] = {
    "Input": Readers(True, True, "yes"),
    "Convolution": Readers(True, True, "yes"),
    "Deconvolution": Readers(True, True, "unmeasured"),
    "InnerProduct": Readers(True, True, "yes"),
    "Pooling": Readers(True, True, "yes"),
    "ReLU": Readers(True, True, "yes"),
    "PReLU": Readers(True, True, "yes"),
    "Sigmoid": Readers(True, True, "unmeasured"),
    "TanH": Readers(True, True, "unmeasured"),
    "Softmax": Readers(True, True, "yes"),
    "Scale": Readers(True, True, "yes"),
    "Eltwise": Readers(True, True, "yes"),
    "Concat": Readers(True, True, "unmeasured"),
    "Slice": Readers(True, True, "yes (two-way; it mis-wires three-way Slices)"),
    "Silence": Readers(True, True, "yes"),
    "Reshape": Readers(True, True, "yes"),
    "Flatten": Readers(True, True, "fails on the open batch dimension"),
    "LRN": Readers(True, True, "unmeasured"),  # OpenCV ignores `k`: the converter always writes k = 1
    "ELU": Readers(True, True, "unmeasured"),
    "Exp": Readers(True, True, "unmeasured"),
    "BNLL": Readers(True, True, "unmeasured"),
    "Power": Readers(True, True, "ignores scale and shift (written as 1 and 0)"),
    "ReLU6": Readers(False, True, "reads it as a plain ReLU (acuitylite 6.57.1, measured)"),
    "Permute": Readers(False, True, "yes"),
    "Normalize": Readers(False, True, "unmeasured"),
}


def reader_warnings(layer_types) -> list[str]:
    """One line per layer type some reader does not take as written: not BVLC (other Caffe builds refuse the
    file) or known to be misread by the NPU toolkit's CaffeLoader."""
    warnings = []
    for layer_type in sorted(set(layer_types)):
        readers = LAYER_READERS.get(layer_type)
        if readers is None:
            continue
        if not readers.bvlc:
            warnings.append(f"model.prototxt uses {layer_type}, which is not a BVLC Caffe layer: OpenCV 4 reads it; "
                            f"the VIM3 toolkit's CaffeLoader: {readers.toolkit}. For the NPU, convert from ONNX "
                            "(--to vim3), not from this Caffe file")
    return warnings
