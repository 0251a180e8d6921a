#!/usr/bin/env bash
# Builds libnn_<case>.so, the library KSNN loads beside the .nb, from the ovxlib case the toolkit generated
# (vnn_<case>.c, vnn_<case>_tensor.c) and edgepad's wrapper (edgepad_npu.c), all in this folder.
#
#   On the VIM3:        bash build_board.sh                      (gcc, the board's ovxlib and OpenVX)
#   Cross compiling:    CC=aarch64-linux-gnu-gcc OVXLIB_INCLUDE=... OVXLIB_LIB=... bash build_board.sh
#   Objects only:       bash build_board.sh --objects-only      (no board libraries needed: checks the C)
#
# OVXLIB_INCLUDE: a folder holding ovxlib/vsi_nn_pub.h and VX/, CL/ (default: the first of /usr/include,
# /usr/local/include, /usr/share/npu/sdk/include that has it). OVXLIB_LIB: where libovxlib.so and libOpenVX.so
# are (default: the linker's path). OUT: the library written (default: ./libnn_<case>.so).
# EMULATOR_SDK: edgepad's host build for VeriSilicon's x86 emulator (vsi_sdk/prebuilt-sdk/x86_64_linux): its headers,
# its libraries (found at run time through the library's RPATH) and its path recorded in the library.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

objects_only=0
[ "${1:-}" = "--objects-only" ] && objects_only=1

case_name=$(sed -n 's/^#define EDGEPAD_CASE_NAME "\([A-Za-z0-9_]*\)".*/\1/p' edgepad_case.h)
if [ -z "$case_name" ]; then
  echo "error: $here/edgepad_case.h names no case; copy the whole vim3/ folder of the convert output" >&2
  exit 2
fi
CC=${CC:-gcc}
OUT=${OUT:-$here/libnn_${case_name}.so}
BUILD_DIR=${BUILD_DIR:-$(mktemp -d)}
mkdir -p "$BUILD_DIR"

emulator=()
if [ -n "${EMULATOR_SDK:-}" ]; then
  OVXLIB_INCLUDE=${OVXLIB_INCLUDE:-$EMULATOR_SDK/include}
  OVXLIB_LIB=${OVXLIB_LIB:-$EMULATOR_SDK/lib}
  emulator=("-DEDGEPAD_EMULATOR_SDK=\"$EMULATOR_SDK\"")
fi

include=${OVXLIB_INCLUDE:-}
if [ -z "$include" ]; then
  for candidate in /usr/include /usr/local/include /usr/share/npu/sdk/include; do
    if [ -f "$candidate/ovxlib/vsi_nn_pub.h" ]; then include=$candidate; break; fi
  done
fi
if [ -z "$include" ] || [ ! -f "$include/ovxlib/vsi_nn_pub.h" ]; then
  echo "error: ovxlib headers not found (ovxlib/vsi_nn_pub.h); install the board's NPU SDK or set OVXLIB_INCLUDE" >&2
  exit 2
fi

sources=(edgepad_npu.c "vnn_${case_name}.c")
[ -f "vnn_${case_name}_tensor.c" ] && sources+=("vnn_${case_name}_tensor.c")
cflags=(-fPIC -O2 -Wall -Wno-unused-function -Wno-unused-variable -Wno-unused-but-set-variable -D__linux__ -DLINUX
        -I"$here" -I"$include" -I"$include/ovxlib" -I"$include/VX" -I"$include/CL" "${emulator[@]}")

objects=()
for source in "${sources[@]}"; do
  object="$BUILD_DIR/${source%.c}.o"
  "$CC" "${cflags[@]}" -c "$source" -o "$object"
  objects+=("$object")
done
if [ "$objects_only" = 1 ]; then
  echo "compiled ${#objects[@]} objects into $BUILD_DIR"
  exit 0
fi

libdir=()
[ -n "${OVXLIB_LIB:-}" ] && libdir=(-L"$OVXLIB_LIB")
# the emulator's libraries load each other by soname: an RPATH (not RUNPATH) reaches them all
[ -n "${EMULATOR_SDK:-}" ] && libdir+=("-Wl,--disable-new-dtags,-rpath,$EMULATOR_SDK/lib")
"$CC" -shared -o "$OUT" "${objects[@]}" "${libdir[@]}" -lovxlib -lOpenVX -lm
echo "built $OUT"
