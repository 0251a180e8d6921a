#!/usr/bin/env bash
# Fresh machine to a converted, parity-checked PAD model in one command, as an ordinary user: no root, no apt-get,
# no NPU toolkit, no Python 3.8. It makes a virtual environment (.venv), installs edgepad, cuts aligned face crops
# out of the photos that ship with the project, converts the example model (a MobileNet PAD classifier written by
# TensorFlow 2.4) to ONNX, Caffe and an integer TFLite model calibrated on those faces, and runs face detection,
# alignment and live/spoof classification on a group photo, drawing the decisions.
# The example model's weights were fitted to noise, not to faces: its live/spoof decisions show the pipeline working,
# not a trained detector (train one with `edgepad train`, see README). The VIM3 NPU target and the test suite need
# more (README, "What each command needs").
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "quickstart: $PYTHON is not Python 3.10 or newer; run with PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
echo "installing edgepad into .venv (TensorFlow and friends: a few minutes the first time)"
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v -E "^WARNING: Location" || true
.venv/bin/python -m pip install -q -e . 2>&1 | grep -v -E "^WARNING: Location" || true
edgepad=.venv/bin/edgepad
out=out/quickstart
rm -rf "$out/faces"
mkdir -p "$out/faces"
# Aligned 112x112 crops of every face in the photos: the calibration set of the integer (TFLite) model.
for photo in tests/fixtures/faces/t1.jpg tests/fixtures/faces/astronaut.png; do
  "$edgepad" run "$photo" --min-face-size 20 --save-crops "$out/faces" --json >/dev/null
done
cp tests/fixtures/faces/Tom_Hanks_54745.png "$out/faces/"
"$edgepad" convert tests/fixtures/legacy_h5/pad_mobilenet.h5 -o "$out/classifier" --to onnx,caffe,tflite \
  --calibration "$out/faces" --sample-images tests/fixtures/faces --force
"$edgepad" run tests/fixtures/faces/t1.jpg --classifier "$out/classifier" --draw "$out/t1_faces.png"
echo "faces drawn in $out/t1_faces.png"
echo "model card: $out/classifier/edgepad.json, parity report: $out/classifier/report.json"
