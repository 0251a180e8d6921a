"""Put edgepad's NPU wrapper beside a generated ovxlib case and build `libnn_<case>.so` from them.

The toolkit writes the case (vnn_<case>.c/.h, vnn_<case>_tensor.c) into OUT/vim3/. This module adds the wrapper
(edgepad_npu.c/.h), `edgepad_case.h` (which generated functions to call, which NPU the NBG targets) and
`build_board.sh`, then runs that same script against the toolkit's x86 SDK to build the host (emulator) library.
On the board, or with a cross compiler, the script builds the aarch64 library from the same files.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgepad.errors import ExportError, ToolkitError
from edgepad.runtime.card import NpuLibrary

HERE = Path(__file__).parent
WRAPPER_FILES = ("edgepad_npu.c", "edgepad_npu.h", "build_board.sh")
CASE_HEADER = "edgepad_case.h"
BUILD_TIMEOUT_S = 300


@dataclass
class NpuLibraryBuild:
    """What the build wrote: the library, and the files the board needs to build its own."""

    case: str
    target: str
    library: Path
    sources: list[str]  # file names in the vim3 folder, the board build's inputs
    build_log: Path

    def card_entry(self, rel) -> NpuLibrary:
        return NpuLibrary(case=self.case, target=self.target, library=rel(self.library.name),
                          library_machine="x86-64 (VeriSilicon emulator build; build_board.sh rebuilds it on the "
                                          "board)",
                          build_script=rel("build_board.sh"), sources=[rel(s) for s in self.sources])


def case_functions(case_dir: Path, case: str) -> tuple[str, str]:
    """The generated create/release functions of the case (vnn_Create<Case> / vnn_Release<Case>)."""
    header = case_dir / f"vnn_{case}.h"
    if not header.is_file():
        raise ExportError(f"{header}: the toolkit's ovxlib case has no such header; export the case again")
    text = header.read_text(errors="replace")
    creates = re.findall(r"vsi_nn_graph_t\s*\*\s*(vnn_Create\w+)\s*\(", text)
    releases = [f for f in re.findall(r"void\s+(vnn_Release\w+)\s*\(", text) if not f.endswith("QuantParams")]
    if len(creates) != 1 or len(releases) != 1:
        raise ExportError(f"{header}: expected one vnn_Create*/vnn_Release* pair, found {creates} / {releases}; "
                          "this toolkit's case layout is not one edgepad knows")
    return creates[0], releases[0]


def stage_sources(vim3_dir: Path, case: str, target: str, pid: int) -> list[str]:
    """Copy the wrapper and write edgepad_case.h into vim3_dir; the names of every file the board build needs."""
    create, release = case_functions(vim3_dir, case)
    for name in WRAPPER_FILES:
        shutil.copy2(HERE / name, vim3_dir / name)
    (vim3_dir / CASE_HEADER).write_text(
        f"/* Written by edgepad: the generated case the wrapper (edgepad_npu.c) drives. */\n"
        f'#include "vnn_{case}.h"\n'
        f'#define EDGEPAD_CASE_NAME "{case}"\n'
        f"#define EDGEPAD_CASE_CREATE {create}\n"
        f"#define EDGEPAD_CASE_RELEASE {release}\n"
        f'#define EDGEPAD_TARGET_NAME "{target}"\n'
        f"#define EDGEPAD_TARGET_PID 0x{pid:x}u\n")
    case_files = [f"vnn_{case}.c", f"vnn_{case}.h", "vnn_global.h"]
    if (vim3_dir / f"vnn_{case}_tensor.c").is_file():
        case_files.append(f"vnn_{case}_tensor.c")
    missing = [f for f in case_files if not (vim3_dir / f).is_file()]
    if missing:
        raise ExportError(f"{vim3_dir}: the ovxlib case lacks {', '.join(missing)}; export the case again")
    return case_files + list(WRAPPER_FILES) + [CASE_HEADER]


def emulator_sdk(sdk_dir: Path) -> Path:
    """The x86 prebuilt SDK inside the toolkit's unpacked vsi_sdk: headers, ovxlib, the emulator."""
    prebuilt = Path(sdk_dir) / "prebuilt-sdk" / "x86_64_linux"
    if not (prebuilt / "lib" / "libEmulator.so").is_file() or not (prebuilt / "include" / "ovxlib").is_dir():
        raise ToolkitError(f"{sdk_dir}: the Vivante emulator SDK is missing (no prebuilt-sdk/x86_64_linux with "
                           "libEmulator.so and ovxlib headers); run `edgepad toolkit install --force`")
    if re.search(r'[\s"\\]', str(prebuilt)):
        raise ToolkitError(f"{prebuilt}: the emulator SDK path holds spaces or quotes, which the C build cannot "
                           "record; set EDGEPAD_HOME to a plain path and install the toolkit there")
    return prebuilt


def build_host_library(vim3_dir: Path, case: str, target: str, pid: int, sdk_dir: Path, log: Path) -> NpuLibraryBuild:
    """Stage the sources and build vim3_dir/libnn_<case>.so for the x86 emulator with build_board.sh."""
    sources = stage_sources(vim3_dir, case, target, pid)
    prebuilt = emulator_sdk(sdk_dir)
    compiler = shutil.which("gcc")
    if compiler is None:
        raise ToolkitError("gcc not found: the NPU library is built with it; install gcc (apt-get install gcc)")
    log.parent.mkdir(parents=True, exist_ok=True)
    library = vim3_dir / f"libnn_{case}.so"
    with tempfile.TemporaryDirectory(prefix="edgepad-npu-build-") as build_dir, open(log, "w") as out:
        env = dict(os.environ, CC=compiler, EMULATOR_SDK=str(prebuilt), OUT=str(library), BUILD_DIR=build_dir)
        result = subprocess.run(["bash", str(vim3_dir / "build_board.sh")], cwd=vim3_dir, env=env, stdout=out,
                                stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S)
    if result.returncode != 0 or not library.is_file():
        raise ExportError(f"building {library.name} from the ovxlib case failed (gcc against {prebuilt}); log: {log}")
    return NpuLibraryBuild(case, target, library, sources, log)
