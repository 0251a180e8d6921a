#!/usr/bin/env bash
# Everything the test suite needs on a fresh machine: system packages, the Python venv, the project.
# Idempotent and quiet; each area adds its own steps here.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
# gcc and the aarch64 cross compiler (with its C library headers) build the NPU library for the emulator and the board
apt_packages=(openssh-server openssh-client gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
missing=()
for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel 2>&1 | grep -v -E "^WARNING: Location" || true
echo "installing edgepad and its test dependencies"
.venv/bin/python -m pip install -q -e ".[test]" 2>&1 | grep -v -E "^WARNING: Location" || true
.venv/bin/edgepad --version

# The VeriSilicon NPU toolkit (acuitylite 6.57.1 + torch, about 8 GB) in its own venv inside the clone, built from
# scratch with a Python acuitylite has wheels for (3.10/3.12/3.8, on PATH or pyenv). The vim3 tests find it through
# EDGEPAD_HOME, which .ci/run exports as $PWD/.cache/edgepad. Idempotent: a marker file records what was installed.
export EDGEPAD_HOME=${EDGEPAD_HOME:-$PWD/.cache/edgepad}
.venv/bin/edgepad toolkit install

# The board stand-in: Python 3.8 with only numpy, OpenCV 4 and onnxruntime (the runtime and deploy tests use it).
export EDGEPAD_TEST_CACHE=${EDGEPAD_TEST_CACHE:-$PWD/.cache/test}
echo "board Python environment: $(.venv/bin/python tests/support/board_env.py)"
