#!/usr/bin/env bash
# Fresh machine to a converted, parity-checked PAD model in one command: installs edgepad, converts the
# example model that ships with the project (a MobileNet PAD classifier written by TensorFlow 2.4), and runs
# face detection, alignment and live/spoof classification on a photo. No board needed.
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/install.sh
out=out/quickstart
.venv/bin/edgepad convert tests/fixtures/legacy_h5/pad_mobilenet.h5 -o "$out/classifier" \
  --sample-images tests/fixtures/faces --force
if .venv/bin/edgepad run --help >/dev/null 2>&1; then
  .venv/bin/edgepad run tests/fixtures/faces/t1.jpg --bundle "$out/classifier" --draw "$out/t1_faces.png"
  echo "faces drawn in $out/t1_faces.png"
fi
echo "model card: $out/classifier/edgepad.json, parity report: $out/classifier/report.json"
