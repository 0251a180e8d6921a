"""Times the VIM3 NPU path: `edgepad toolkit install` from scratch, and `edgepad convert --to onnx,vim3`.

usage: python benchmarks/bench_npu.py [--skip-install] [--models pad_mobilenet,sequential_small]
                                    [--quantize uint8,int16,auto]

Per scheme it prints the quantized model's cosine to float and its decision agreement on held-out faces (every 5th
calibration face, never used to calibrate).

Baselines measured in the same run:
- install: a bare `python -m venv` + `pip install acuitylite==6.57.1 torch` (what a user would do by hand), so
  the ratio shows what edgepad adds (the SDK unpack, the import check). Both use pip's cache as it is.
- convert: the bare toolkit sequence alone (OnnxLoader -> quantize -> NBG export) in the toolkit venv, on the
  same ONNX graph and calibration tensors; the ratio shows what edgepad's checks cost (float and quantized
  simulation on every input, the per-layer table, the ovxlib case export, the header check).
Needs the toolkit environment for the convert part (`edgepad toolkit install`).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "legacy_h5"
sys.path.insert(0, str(ROOT / "tests"))

BARE_TOOLKIT = """
import sys, numpy as np
from acuitylib.interface.importer import OnnxLoader
from acuitylib.interface.quantization import Quantization
from acuitylib.interface.exporter import OvxlibExporter
onnx_path, name, shape, outputs, calibration, sdk, out, licence = sys.argv[1:9]
model = OnnxLoader(model=onnx_path).load(inputs=[name], input_size_list=[eval(shape)], outputs=outputs.split(","))
data = np.load(calibration)
Quantization(model).quantize(input_generator_func=lambda: ([x] for x in data), quantizer="asymmetric_affine",
                             qtype="uint8", iterations=len(data))
OvxlibExporter(model).export(out + "/bare", pack_nbg_only=True, viv_sdk=sdk, licence=licence)
"""


def timed(command: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - start


def bench_install() -> None:
    from edgepad.convert.vim3.toolkit_env import TOOLKIT_REQUIREMENTS, directory_size, find_base_python, human_size

    base = find_base_python()
    with tempfile.TemporaryDirectory(prefix="bench-npu-") as tmp:
        bare = timed([str(base), "-m", "venv", f"{tmp}/bare"]) + timed(
            [f"{tmp}/bare/bin/python", "-m", "pip", "install", "-q", *TOOLKIT_REQUIREMENTS])
        shutil.rmtree(f"{tmp}/bare")
        ours = timed([str(ROOT / ".venv" / "bin" / "edgepad"), "toolkit", "install", "--home", f"{tmp}/ours"])
        size = directory_size(Path(tmp) / "ours")
        again = timed([str(ROOT / ".venv" / "bin" / "edgepad"), "toolkit", "install", "--home", f"{tmp}/ours"])
    print(f"toolkit install (from scratch, pip cache as is): {ours:7.1f} s  environment {human_size(size)}")
    print(f"  baseline bare venv + pip install:              {bare:7.1f} s  ratio {ours / bare:.2f}x")
    print(f"  second install (already there):                {again:7.1f} s")


def bench_convert(models: list[str], quantize: str, min_cosine: float = 0.0, min_agreement: float = 0.0) -> None:
    import numpy as np

    from edgepad.convert.pipeline import ConvertOptions, convert_model
    from edgepad.convert.vim3.toolkit_env import require_toolkit
    from edgepad.progress import Steps

    from conftest import FACES
    from support.calibration_faces import calibration_faces_dir

    env = require_toolkit()
    calibration = calibration_faces_dir(FACES)
    for name in models:
        with tempfile.TemporaryDirectory(prefix="bench-npu-") as tmp:
            steps = Steps(quiet=True)
            start = time.perf_counter()
            result = convert_model(ConvertOptions(model=FIXTURES / f"{name}.h5", out=Path(tmp) / "out",
                                                  targets=("onnx", "vim3"), quantize=quantize,
                                                  calibration=calibration, calibration_count=32,
                                                  min_cosine=min_cosine, min_agreement=min_agreement), steps)
            total = time.perf_counter() - start
            vim3 = next(v for k, v in steps.timings.items() if k.startswith("Compiling for"))
            entry = result.card.targets.onnx_nchw
            calibration_npy = Path(tmp) / "calibration.npy"
            toolkit_log = result.report.check("vim3").details["toolkit_log"]
            np.save(calibration_npy, np.load(_last_run_calibration(env, toolkit_log)))
            licence = Path(tmp) / "licence.txt"
            licence.write_text("VIPNANOQI_PID0X88")
            graph = result.out / "vim3" / "model.pixels.onnx"  # what the vim3 step compiles (pixels in)
            bare = timed([str(env.python), "-c", BARE_TOOLKIT, str(graph), entry.input,
                          json.dumps(entry.input_shape), ",".join(entry.outputs), str(calibration_npy),
                          str(env.sdk_dir), tmp, str(licence)], env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
        report = result.report.check("vim3")
        details = report.details
        if "auto" in details:
            tried = ", ".join(t["quantize"] for t in details["auto"]["tried"])
            print(f"  auto chose {details['auto']['chosen']} (tried {tried})")
            cost = details["auto"].get("estimated_time_cost")
            if cost:  # a mixed model: which layers went to int16, and what the performance model says they cost
                print(f"  int16 layers: {', '.join(details['auto']['int16_layers'])}; estimated "
                      f"{cost['mixed_ms']} ms vs uint8's {cost['uint8_ms']} ms (x{cost.get('ratio')})")
        emulated = result.report.check("vim3_emulated")
        vs_simulation = emulated.details.get("vs_simulation") if emulated is not None else None
        agreement = details.get("decision_agreement")
        print(f"{name:<17} {quantize}: convert total {total:6.1f} s, vim3 step {vim3:6.1f} s "
              f"(cosine {report.cosine:.5f}, min {report.parity['cosine_min']:.5f}, "
              f"top-1 {report.top1_agreement:.0%})")
        print(f"  held-out faces ({len(details['eval_sources'])}, none calibrated): decision agreement "
              + (f"{agreement:.1%}" if agreement is not None else "n/a")
              + (f", flipped {len(details['flipped'])}" if details.get("flipped") else ", none flipped")
              + (f"; library vs simulation cosine {vs_simulation['cosine']:.6f}" if vs_simulation else ""))
        print(f"  baseline bare toolkit import+quantize+NBG: {bare:6.1f} s  ratio vim3 step / bare {vim3 / bare:.2f}x")


def _last_run_calibration(env, log: str) -> Path:
    """This conversion's calibration tensors: its run folder is named like its log (other conversions may share
    the toolkit home and run at the same time)."""
    return env.home / "runs" / Path(log).stem / "calibration.npy"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-install", action="store_true", help="do not time the (8 GB) install")
    parser.add_argument("--models", default="pad_mobilenet,sequential_small")
    parser.add_argument("--quantize", default="uint8,int16,auto", help="schemes, comma separated")
    args = parser.parse_args()
    if not args.skip_install:
        bench_install()
    from edgepad.convert.heldout import DEFAULT_MIN_AGREEMENT
    from edgepad.convert.parity import QUANTIZED_MIN_COSINE

    for scheme in args.quantize.split(","):
        # gates off for a fixed scheme: the figures are what is measured (the held-out faces are every 5th
        # calibration face); auto chooses by the default gates
        gates = (QUANTIZED_MIN_COSINE, DEFAULT_MIN_AGREEMENT) if scheme == "auto" else (0.0, 0.0)
        bench_convert(args.models.split(","), scheme, *gates)
    return 0


if __name__ == "__main__":
    sys.exit(main())
