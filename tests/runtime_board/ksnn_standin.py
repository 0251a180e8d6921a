"""StandInKSNN: a test double for Khadas' KSNN (`ksnn.api.KSNN`), which exists only on the VIM3 board.

It accepts exactly the calls KSNN documents and refuses anything else:
    KSNN(board)                                    board: 'VIM3' (or 'VIM3L', 'VIM4')
    nn_init(library=<libnn_*.so>, model=<*.nb>, level=0)
    nn_inference([img], platform=..., reorder='0 1 2'|'2 1 0', output_tensor=N,
                 output_format=output_format.OUT_FORMAT_FLOAT32)  -> N flat float32 arrays
The .nb here is a placeholder: the outputs are computed by onnxruntime on the same folder's model.onnx (the
float model the NBG was compiled from), so the backend's reshaping is checked against real numbers.
Every call is logged in StandInKSNN.calls. Importable as a KSNN API module (EDGEPAD_KSNN_API=ksnn_standin).
"""
from __future__ import annotations

import enum
import os

import numpy as np

PLATFORMS = ("TENSORFLOW", "TFLITE", "CAFFE", "DARKNET", "ONNX", "KERAS", "PYTORCH")
BOARDS = ("VIM3", "VIM3L", "VIM4")


class output_format(enum.Enum):  # noqa: N801 -- KSNN's own name (ksnn.types.output_format)
    OUT_FORMAT_UINT8 = 0
    OUT_FORMAT_INT8 = 1
    OUT_FORMAT_INT16 = 2
    OUT_FORMAT_FLOAT32 = 3


class StandInKSNN:
    calls: list = []

    def __init__(self, board):
        if board not in BOARDS:
            raise ValueError(f"KSNN: unknown board {board!r}")
        StandInKSNN.calls.append(("KSNN", board))
        self.session = None

    def nn_init(self, library=None, model=None, level=0):
        if not (isinstance(library, str) and library.endswith(".so") and os.path.isfile(library)):
            raise ValueError(f"nn_init: library must be an existing .so, got {library!r}")
        if not (isinstance(model, str) and model.endswith(".nb") and os.path.isfile(model)):
            raise ValueError(f"nn_init: model must be an existing .nb, got {model!r}")
        if not isinstance(level, int) or level not in (0, 1, 2):
            raise ValueError(f"nn_init: level must be 0, 1 or 2, got {level!r}")
        import onnxruntime as ort

        folder = os.path.dirname(os.path.dirname(model))  # <model dir>/vim3/<name>.nb
        # PNet's per-size binaries all come from one fully convolutional graph: the open-size ONNX runs every size
        onnx_file = "model.open.onnx" if os.path.isfile(os.path.join(folder, "model.open.onnx")) else "model.onnx"
        self.session = ort.InferenceSession(os.path.join(folder, onnx_file), providers=["CPUExecutionProvider"])
        StandInKSNN.calls.append(("nn_init", library, model, level))

    def nn_inference(self, inputs, platform="TENSORFLOW", reorder="0 1 2", output_tensor=1,
                     output_format=output_format.OUT_FORMAT_UINT8):
        if self.session is None:
            raise RuntimeError("nn_inference before nn_init")
        if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0],
                          np.ndarray) or inputs[0].ndim != 3:
            raise ValueError("nn_inference: inputs must be a list of one (H, W, C) array")
        if platform not in PLATFORMS:
            raise ValueError(f"nn_inference: unknown platform {platform!r}")
        if reorder not in ("0 1 2", "2 1 0"):
            raise ValueError(f"nn_inference: reorder must be '0 1 2' or '2 1 0', got {reorder!r}")
        outputs = self.session.get_outputs()
        if output_tensor != len(outputs):
            raise ValueError(f"nn_inference: the model has {len(outputs)} outputs, output_tensor={output_tensor}")
        if output_format is not globals()["output_format"].OUT_FORMAT_FLOAT32:
            raise ValueError(f"nn_inference: this stand-in checks float32 output only, got {output_format!r}")
        image = inputs[0] if reorder == "0 1 2" else inputs[0][:, :, ::-1]
        StandInKSNN.calls.append(("nn_inference", platform, reorder, output_tensor, output_format, image.shape,
                                  image.dtype))
        values = self.session.run(None,
                                  {self.session.get_inputs()[0].name: np.ascontiguousarray(image[None], np.float32)})
        return [np.asarray(v, np.float32).ravel() for v in values]


KSNN = StandInKSNN
