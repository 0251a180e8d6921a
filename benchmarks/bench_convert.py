"""Times each step of `edgepad convert` on the Keras 2 fixtures and prints the figures.

usage: python benchmarks/bench_convert.py [--repeat N] [--to onnx,caffe]

Each step's time comes from the converter's own step timings (the same ones report.json records). The
baseline in the same run is the bare load + export (tf_keras and tf2onnx alone: no checks, no simplification), so
the ratio shows what edgepad's validation costs on top of the conversion itself.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "legacy_h5"


def bare_tf2onnx_seconds(h5: Path) -> float:
    import tensorflow as tf
    import tf2onnx
    import tf_keras

    start = time.perf_counter()
    model = tf_keras.models.load_model(str(h5), compile=False)
    spec = [tf.TensorSpec((1, *model.input_shape[1:]), tf.float32, name="input")]
    tf2onnx.convert.from_function(tf.function(lambda x: model(x, training=False)), input_signature=spec, opset=13)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--to", default="onnx", help="targets, as for edgepad convert --to")
    args = parser.parse_args()

    from edgepad.convert.pipeline import ConvertOptions, convert_model, parse_targets

    targets = parse_targets(args.to)
    print(f"edgepad convert --to {','.join(targets)}: median of {args.repeat} runs per fixture (seconds)")
    for h5 in sorted(FIXTURES.glob("*.h5")):
        per_step: dict[str, list[float]] = {}
        totals = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                result = convert_model(ConvertOptions(model=h5, out=Path(tmp) / "out", targets=targets))
                totals.append(time.perf_counter() - start)
            for step, seconds in result.timings.items():
                per_step.setdefault(step, []).append(seconds)
        bare = statistics.median(bare_tf2onnx_seconds(h5) for _ in range(args.repeat))
        total = statistics.median(totals)
        print(f"\n{h5.name}")
        for step, values in per_step.items():
            print(f"  {statistics.median(values):7.2f}  {step}")
        print(f"  {total:7.2f}  total (edgepad convert)")
        print(f"  {bare:7.2f}  baseline: tf_keras load + bare tf2onnx export, no checks")
        print(f"  ratio total / bare export: {total / bare:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
