"""Check a Caffe conversion the way the product does: OpenCV 4's own Caffe importer against onnxruntime."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepad.convert.caffe.onnx_to_caffe import onnx_to_caffe, write_caffe_files
from edgepad.convert.caffe.opencv_runner import run_caffe
from edgepad.convert.onnx.onnx_runner import run_onnx
from edgepad.convert.parity import FLOAT32_ATOL, compare_outputs


def random_inputs(shape, count=2, seed=0, spread=3.0) -> list[np.ndarray]:
    """Values well past ReLU6's 6 and below 0, so clipping and negative slopes are exercised."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape) * spread).astype(np.float32) for _ in range(count)]


def opencv_vs_onnxruntime(model, folder: Path, inputs=None, atol=FLOAT32_ATOL):
    """Convert `model` (ModelProto or path), write it into `folder`, run both; returns (parity, CaffeNet)."""
    folder.mkdir(parents=True, exist_ok=True)
    caffe = onnx_to_caffe(model)
    prototxt, caffemodel = write_caffe_files(caffe, folder)
    inputs = inputs if inputs is not None else random_inputs(caffe.input_shape)
    reference = run_onnx(str(model) if isinstance(model, Path) else model, inputs)
    candidate = run_caffe(prototxt, caffemodel, inputs, caffe.input_blob, caffe.outputs)
    parity = compare_outputs(reference, {n: candidate[n] for n in reference}, reference_name="onnxruntime",
                             candidate_name="opencv-caffe", atol=atol)
    return parity, caffe
