#!/usr/bin/env bash
# Fresh machine to a converted, parity-checked PAD model in one command: installs edgepad, converts the
# example model that ships with the project (a MobileNet PAD classifier written by TensorFlow 2.4), and runs
# face detection, alignment and live/spoof classification on a photo. No board needed.
# The example model's weights were fitted to noise, not to faces: its live/spoof decisions show the pipeline
# working, not a trained detector (train one with `edgepad train`, see README).
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/install.sh
out=out/quickstart
.venv/bin/edgepad convert tests/fixtures/legacy_h5/pad_mobilenet.h5 -o "$out/classifier" \
  --sample-images tests/fixtures/faces --force
.venv/bin/edgepad run tests/fixtures/faces/t1.jpg --classifier "$out/classifier" --draw "$out/t1_faces.png"
echo "faces drawn in $out/t1_faces.png"
echo "model card: $out/classifier/edgepad.json, parity report: $out/classifier/report.json"
