"""edgepad's per-model NPU library: KSNN's `libnn_<case>.so` built from the toolkit's ovxlib case, and its run in
VeriSilicon's emulator (the `vim3_emulated` report section).

The vim3 target calls `build_npu_library()` once its NBG and case are in OUT/vim3/.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepad.errors import ParityError

from .library import NpuLibraryBuild, build_host_library, stage_sources

__all__ = ["NpuLibraryBuild", "build_host_library", "build_npu_library", "stage_sources"]
EMULATED_INPUTS = 8
LIBRARY_TARGET_COSINE = 0.999  # library vs the toolkit's simulation on the same inputs: below it, dump and compare


def build_npu_library(ctx, compilation, evaluation: list[np.ndarray], evaluation_sources: list[str], out_dir: Path,
                      target: str, pid: int) -> dict:
    """Write the wrapper next to the case in out_dir, build the host library, run it in the emulator.

    Adds `npu_library` to the card's vim3 entry and returns the `vim3_emulated` report section (the pipeline puts
    it at the top of report.json). With the Khadas SDK backend there is no local emulator: sources only.
    """
    from edgepad.runtime.preprocess import batches

    from ...parity_inputs import normalized_pixels
    from .emulated import emulated_section, run_library
    from .perf_estimate import estimate_from_log

    entry = ctx.card["targets"]["vim3"]
    rel = lambda name: f"vim3/{name}"  # noqa: E731 - card paths are relative to the card
    case = compilation.case_name
    if ctx.options.npu_toolkit != "acuitylite":
        sources = stage_sources(out_dir, case, target, pid)
        entry["npu_library"] = {"case": case, "target": target, "build_script": rel("build_board.sh"),
                                "sources": [rel(s) for s in sources], "library": None}
        return {"passed": True, "skipped": f"the {ctx.options.npu_toolkit} toolkit has no local emulator"}

    from ..toolkit_env import require_toolkit

    env = require_toolkit()
    with ctx.steps.step(f"Building libnn_{case}.so (edgepad's NPU library) for the emulator"):
        build = build_host_library(out_dir, case, target, pid, env.sdk_dir, env.new_log(f"npu-library-{case}"))
    entry["npu_library"] = build.card_entry(rel)
    # the emulator takes about a second per inference: the sample images (last) and the last calibration images
    count = min(EMULATED_INPUTS, len(evaluation))
    evaluation, evaluation_sources = evaluation[-count:], list(evaluation_sources)[-count:]
    simulation = ({name: values[-count:] for name, values in compilation.quantized_outputs.items()}
                  if compilation.quantized_outputs is not None else None)
    with ctx.steps.step(f"Running libnn_{case}.so in the VIM3 emulator ({count} inputs)"):
        inputs = batches(evaluation, "nchw")  # pixel values, exactly what the toolkit's simulation was given
        log = env.new_log(f"npu-emulated-{case}")
        outputs = run_library(build.library, out_dir / "network_binary.nb", inputs, log)
        reference = ctx.onnx_nchw_outputs(batches([normalized_pixels(x, ctx.card) for x in evaluation], "nchw"))
        section = emulated_section(outputs, reference, simulation, compilation.toolkit,
                                   ctx.options.min_cosine, list(evaluation_sources), card=ctx.card,
                                   inputs=inputs, min_agreement=getattr(ctx.options, "min_agreement", None))
    vs_simulation = section.get("vs_simulation")
    if vs_simulation is not None and vs_simulation["cosine"] < LIBRARY_TARGET_COSINE and compilation.layer_dump:
        # measure where they part: the library's per-node dumps against the simulation's layers, one input
        from ...parity import cosine_similarity
        from .emulated import diagnose_layers
        from .layer_dumps import compare_layer_dumps

        first = next(iter(simulation))
        per_input = [cosine_similarity(s, o) for s, o in zip(simulation[first], outputs[0])]
        worst = int(np.argmin(per_input))  # where library and simulation part most
        with ctx.steps.step("Comparing the library's per-layer outputs with the simulation's (1 input)"):
            dumps = compare_layer_dumps(out_dir, case, target, pid, env.sdk_dir, inputs[worst], compilation.layer_dump,
                                        env.new_log(f"npu-dump-{case}"), index=worst,
                                        source=f"{evaluation_sources[worst]} (output cosine {per_input[worst]:.6f})")
        section["layer_dumps"] = dumps
        section["diagnosis"] += "; " + diagnose_layers(dumps)
    if section.get("library_equals_simulation") is False:
        ctx.warnings.append(f"vim3 emulated: libnn_{case}.so agrees with {compilation.toolkit}'s simulation to cosine "
                            f"{vs_simulation['cosine']:.6f} (target {LIBRARY_TARGET_COSINE}); {section['diagnosis']}")
    section["library"] = rel(build.library.name)
    section["target"] = target
    section["estimated_board_time"] = estimate_from_log(log.read_text(errors="replace"), target)
    section["log"] = str(log)
    if not section["passed"]:
        simulation_cosine = section.get("vs_simulation", {}).get("cosine")
        agreement = section.get("decision_agreement")
        raise ParityError(f"vim3 emulated: libnn_{case}.so reaches cosine {section['cosine']:.4f} against float"
                          + (f" and {simulation_cosine:.4f} against {compilation.toolkit}'s simulation"
                             if simulation_cosine is not None else "")
                          + (f", keeps float's decision on {agreement:.0%}" if agreement is not None else "")
                          + (f" (flipped: {', '.join(Path(f).name for f in section['flipped'])})"
                             if section.get("flipped") else "")
                          + f"; {section['diagnosis']} (log: {log})")
    return section
