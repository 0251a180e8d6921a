"""Runs INSIDE the Dockerfile.tf110 container (Python 3.5/3.6): drives Khadas' `pegasus` like the SDK's own scripts.

    python3 khadas_pegasus_job.py --request /edgepad/work/request.json --sdk /edgepad/sdk

Paths in the request are relative to the request file's folder (the mounted work folder), so the same script runs
wherever the folder is mounted. Steps, as in aml_npu_sdk's demo scripts (import, quantize, export):
  pegasus import onnx, pegasus generate inputmeta, pegasus quantize, pegasus export ovxlib --pack-nbg-unify.
Writes result.json beside the request: {"ok": true, ...} or {"ok": false, "error": {"stage", "message"}}.
No f-strings and no annotations: the container's Python predates them.
"""
import argparse
import json
import os
import platform
import subprocess
import sys


class JobError(Exception):
    def __init__(self, stage, message):
        Exception.__init__(self, message)
        self.stage = stage


def pegasus_command(sdk):
    """The SDK ships pegasus as a binary, older releases as pegasus.py (see its demo scripts)."""
    bin_dir = os.path.join(sdk, "acuity-toolkit", "bin")
    for name in ("pegasus", "pegasus.py"):
        path = os.path.join(bin_dir, name)
        if os.path.isfile(path):
            return [path] if os.access(path, os.X_OK) else [sys.executable, path]
    raise JobError("locating pegasus", "no acuity-toolkit/bin/pegasus in the SDK at %s" % sdk)


def run(stage, command, log):
    log.write("$ " + " ".join(command) + "\n")
    log.flush()
    code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        raise JobError(stage, "pegasus failed while %s (exit %d)" % (stage, code))


def commands(request, sdk, work):
    """The pegasus command lines for one request, in order: (stage, argv)."""
    pegasus = pegasus_command(sdk)
    name = request["case_name"]
    model, data = os.path.join(work, name + ".json"), os.path.join(work, name + ".data")
    inputmeta = os.path.join(work, name + "_inputmeta.yml")
    quantize_file = os.path.join(work, name + ".quantize")
    c, h, w = request["input_shape"][1:]
    steps = [
        ("importing the ONNX model", pegasus + [
            "import", "onnx", "--model", os.path.join(work, request["onnx"]),
            "--inputs", request["input_name"], "--outputs", " ".join(request["outputs"]),
            "--input-size-list", "%d,%d,%d" % (c, h, w),
            "--output-model", model, "--output-data", data]),
        # the calibration tensors are normalised already (edgepad applied the model card): mean 0, scale 1
        ("generating the input meta", pegasus + [
            "generate", "inputmeta", "--model", model, "--input-meta-output", inputmeta,
            "--channel-mean-value", " ".join(["0"] * c + ["1"]),
            "--source-file", os.path.join(work, request["dataset"])]),
    ]
    # edgepad's table (convert/vim3/compilation.py) names the pair; float16 has no quantize step (--dtype float)
    quantizer, qtype = request["quantizer"], request["qtype"]
    if request["scheme"] == "float16":
        quantizer = None
    if quantizer is not None:
        steps.append(("quantizing", pegasus + [
            "quantize", "--quantizer", quantizer, "--qtype", qtype, "--rebuild",
            "--with-input-meta", inputmeta, "--model", model, "--model-data", data,
            "--model-quantize", quantize_file, "--iterations", str(request["calibration_count"])]))
    export = pegasus + ["export", "ovxlib", "--model", model, "--model-data", data]
    if quantizer is not None:
        export += ["--model-quantize", quantize_file, "--dtype", "quantized"]
    else:
        export += ["--dtype", "float"]
    export += ["--optimize", request["target"], "--viv-sdk", os.path.join(sdk, "acuity-toolkit", "bin", "vcmdtools"),
               "--with-input-meta", inputmeta, "--output-path", os.path.join(work, "case", name), "--pack-nbg-unify"]
    steps.append(("exporting the NBG", export))
    return steps


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--request", required=True)
    parser.add_argument("--sdk", required=True)
    args = parser.parse_args(argv)
    work = os.path.dirname(os.path.abspath(args.request))
    with open(args.request) as f:
        request = json.load(f)
    result = {"ok": True, "python": platform.python_version()}
    with open(os.path.join(work, "pegasus.log"), "a") as log:
        try:
            for stage, command in commands(request, args.sdk, work):
                run(stage, command, log)
            # --pack-nbg-unify writes the NBG and its case into <output folder>_nbg_unify
            result["nbg_dir"] = os.path.relpath(os.path.join(work, "case_nbg_unify"), work)
        except JobError as error:
            result = {"ok": False, "python": result["python"], "error": {"stage": error.stage, "message": str(error)}}
    with open(os.path.join(work, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
