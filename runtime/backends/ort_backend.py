"""onnxruntime: the open-shape model.open.onnx when the folder has it (any PNet size, batched crops), else model.onnx."""
from __future__ import annotations

import os
from typing import Dict

import numpy as np

from .base import BackendError, InferenceModel, nhwc_to

THREADS_ENV = "EDGEPAD_THREADS"  # onnxruntime's threads per model when not given (0: one per core)


class OnnxRuntimeModel(InferenceModel):
    name = "onnxruntime"

    def __init__(self, model_dir: str, card: dict | None = None, threads: int = 0):
        super().__init__(model_dir, card)
        import onnxruntime as ort

        targets = self.card.get("targets", {})
        key = "onnx_open" if "onnx_open" in targets else "onnx"
        if key not in targets:
            raise BackendError(f"{model_dir}: the model card has no ONNX file; convert with --to onnx")
        self.entry = targets[key]
        self.layout = self.entry.get("layout", "nhwc")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        threads = threads or int(os.environ.get(THREADS_ENV, "0") or 0)
        if threads:
            options.intra_op_num_threads = threads
        # Busy-waiting worker threads steal the cores the camera, OpenCV and the other nets need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = self._path(self.entry["file"])
        try:
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for bad files
            raise BackendError(f"{path}: onnxruntime cannot load it ({str(error).splitlines()[0]})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.session_outputs = [o.name for o in self.session.get_outputs()]
        batch_dim = self.session.get_inputs()[0].shape[0]
        self.batch_open = not isinstance(batch_dim, int)
        if not self.output_names:
            self.output_names = list(self.session_outputs)

    @classmethod
    def available(cls) -> bool:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return False
        return True

    def _run_batch(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        values = self.session.run(None, {self.input_name: nhwc_to(batch, self.layout)})
        by_name = dict(zip(self.session_outputs, values))
        return {name: by_name[name] for name in self.output_names}
