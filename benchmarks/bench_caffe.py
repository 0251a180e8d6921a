"""The Caffe target's costs: ONNX -> Caffe conversion time, and inference time of the written Caffe model in
OpenCV 4 (how the board's OpenCV backend runs it), against baselines measured in the same run: the same NCHW
ONNX graph in onnxruntime (default graph optimisations) and in OpenCV's own ONNX importer.

usage: python benchmarks/bench_caffe.py [--runs N]

Models: the Keras 2 fixtures (MobileNet PAD classifier 112x112, a small sequential net) and MTCNN's ONet.
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "legacy_h5"


def forward(net, x, outputs, input_name: str = ""):
    """One OpenCV dnn inference: what is timed for cv2.dnn."""
    net.setInput(x, input_name)
    return net.forward(outputs)


def median_ms(function, runs: int) -> float:
    function()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def converted_models(scratch: Path):
    """(name, output folder) for each model, converted once with `edgepad convert --to onnx,caffe`."""
    from edgepad.convert.mtcnn_keras import build_net
    from edgepad.convert.pipeline import ConvertOptions, convert_model

    sources = [(h5.stem, h5, {}) for h5 in sorted(FIXTURES.glob("*.h5"))]
    onet = scratch / "onet.h5"
    build_net("onet").save(onet)
    sources.append(("mtcnn_onet", onet, {"mean": (127.5,), "std": (128.0,)}))
    for name, h5, options in sources:
        out = scratch / name
        convert_model(ConvertOptions(model=h5, out=out, targets=("onnx", "caffe"), **options))
        yield name, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="timed inferences per runtime (median reported)")
    args = parser.parse_args()

    import cv2
    import onnxruntime as ort

    from edgepad.convert.caffe.onnx_to_caffe import onnx_to_caffe, write_caffe_files
    from edgepad.convert.caffe.opencv_runner import load_caffe_net

    cv2.setNumThreads(1)  # one core, as a fair per-inference figure on a shared machine
    print(f"ONNX -> Caffe, and inference medians of {args.runs} runs, batch 1, one thread (ms)")
    header = (f"{'model':20} {'to caffe':>9} {'layers':>7} {'ort':>8} {'cv onnx':>8} {'cv caffe':>9} "
              f"{'caffe/ort':>10} {'caffe/cv onnx':>14}")
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for name, out in converted_models(Path(tmp)):
            onnx_path = out / "model.nchw.onnx"
            start = time.perf_counter()
            caffe = onnx_to_caffe(onnx_path)
            write_caffe_files(caffe, Path(tmp))
            convert_ms = (time.perf_counter() - start) * 1000

            x = np.random.default_rng(0).uniform(-1, 1, caffe.input_shape).astype(np.float32)
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
            ort_input = session.get_inputs()[0].name
            cv_onnx = cv2.dnn.readNetFromONNX(str(onnx_path))
            cv_onnx.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
            cv_caffe = load_caffe_net(out / "model.prototxt", out / "model.caffemodel")
            outputs = list(caffe.outputs.values())

            ort_ms = median_ms(functools.partial(session.run, None, {ort_input: x}), args.runs)
            cv_onnx_ms = median_ms(functools.partial(forward, cv_onnx, x, cv_onnx.getUnconnectedOutLayersNames()),
                                   args.runs)
            cv_caffe_ms = median_ms(functools.partial(forward, cv_caffe, x, outputs, caffe.input_blob), args.runs)
            layers = sum(caffe.layer_types.values())
            print(f"{name:20} {convert_ms:9.1f} {layers:7d} {ort_ms:8.2f} {cv_onnx_ms:8.2f} {cv_caffe_ms:9.2f} "
                  f"{cv_caffe_ms / ort_ms:10.2f} {cv_caffe_ms / cv_onnx_ms:14.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
