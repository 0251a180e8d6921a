"""`edgepad bench`: the runtime's benchmark on the board and on this host, side by side, with a PNG plot."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgepad.commands.options import board_command, board_options, verbose_option


@click.command()
@board_options
@click.option("--image", required=True, type=click.Path(path_type=Path), help="Image with faces, run on both sides.")
@click.option("--bundle", type=click.Path(path_type=Path),
              help="Local bundle whose manifest the board's model files must match [default: the board's own "
                   "manifest]. The host always runs its own installed runtime.")
@click.option("--runs", type=int, default=20, show_default=True, help="Timed runs per side (after one warm-up).")
@click.option("--backend", type=click.Choice(["onnxruntime", "opencv", "ksnn", "tflite"]),
              help="Board backend [default: the runtime's choice, ksnn for models with NPU files]; the host uses it "
              "too, or onnxruntime for ksnn and the default.")
@click.option("--plot", type=click.Path(path_type=Path), default=Path("bench.png"), show_default=True,
              help="PNG written with the per-stage bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
@verbose_option
@board_command
def bench(hosts, board, kwargs):
    """Benchmark the current release on the board against the same runtime on this host (per-stage p50/p95 ms, fps)."""
    from edgepad.deploy.bench import bench as run_bench
    from edgepad.deploy.bench import comparison_rows
    from edgepad.deploy.bench_plot import plot_bench
    from edgepad.errors import UsageError

    if kwargs["runs"] < 1:
        raise UsageError(f"--runs {kwargs['runs']}: run at least once")
    if len(hosts) != 1:
        raise UsageError("edgepad bench takes one board: pass a single --host")
    result = run_bench(hosts[0], board, kwargs["image"], kwargs["runs"], kwargs["bundle"], kwargs["backend"])
    rows = comparison_rows(result)
    fps = {"board": result["board"].get("fps"), "host": result["local"].get("fps")}
    title = f"{result['host']} vs this host, release {result['release']}"
    result["plot"] = str(plot_bench(rows, title, fps, kwargs["plot"]))
    result["stages"] = rows
    if kwargs["as_json"]:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['host']} (release {result['release']}) vs this host, {result['repeats']} runs, image "
               f"{result['image']}")
    click.echo(f"{'stage':<12}{'board p50':>11}{'board p95':>11}{'host p50':>11}{'host p95':>11}{'board/host':>12}")
    for r in rows:
        cells = [r["board_p50"], r["board_p95"], r["host_p50"], r["host_p95"]]
        ratio = f"{r['board_over_host']:.2f}x" if r["board_over_host"] else "-"
        figures = "".join(f"{c:>11.2f}" if c is not None else f"{'-':>11}" for c in cells)
        click.echo(f"{r['stage']:<12}{figures}{ratio:>12}")
    click.echo(f"{'fps':<12}{fps['board'] or '-':>11}{'':>11}{fps['host'] or '-':>11}")
    click.echo(f"plot: {result['plot']}")
