"""`edgepad deploy`, `rollback`, `status`: a bundle onto boards over SSH, and what runs there."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgepad.commands.options import board_command, board_options, verbose_option
from edgepad.errors import EdgepadError, UsageError


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@board_options
@click.option("--keep", "keep_arg", type=int, default=5, show_default=True,
              help="Releases kept on the board (the current one and the one it replaced always stay).")
@click.option("--backend", type=click.Choice(["onnxruntime", "opencv", "ksnn", "tflite"]),
              help="Runtime backend for the health check [default: the runtime's choice].")
@click.option("--dry-run", is_flag=True, help="Connect and say what would be sent and reused; change nothing.")
@click.option("--no-health-check", is_flag=True, help="Skip the parity check on the board (not recommended).")
@click.option("--health-timeout", type=float, default=300, show_default=True,
              help="Seconds the health check may take on the board (a first NPU load takes minutes); past it the "
                   "runtime is stopped and the release set aside.")
@click.option("--break-lock", is_flag=True,
              help="Free the deploy lock of a client that is gone (killed, or cut off before sshd noticed); "
                   "says who held it.")
@click.option("--parallel", type=int, default=4, show_default=True, help="Boards deployed at once.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as JSON on stdout (one object; {'hosts': [...]} for several boards).")
@verbose_option
@board_command
def deploy(hosts, board, kwargs):
    """Push BUNDLE to the board(s): upload what is new, verify every sha256 there, run the runtime's parity check
    on the new release, and only when it passes switch `current` atomically (else `current` never moves).

    \b
    Board layout: REMOTE_DIR/releases/<id>/ (copies of the bundle), REMOTE_DIR/current -> releases/<id>.
    Example:
      edgepad deploy pad_bundle --host khadas@vim3.local --identity ~/.ssh/id_ed25519
    """
    from edgepad.deploy.pipeline import DeployOptions, deploy_many
    from edgepad.progress import Bars

    if kwargs["health_timeout"] <= 0:
        raise UsageError(f"--health-timeout {kwargs['health_timeout']:g}: give a number of seconds above 0")
    options = DeployOptions(kwargs["bundle"], board, keep=kwargs["keep_arg"], backend=kwargs["backend"],
                            dry_run=kwargs["dry_run"], health_check=not kwargs["no_health_check"],
                            health_timeout=kwargs["health_timeout"], break_lock=kwargs["break_lock"])
    with Bars(unit="bytes", quiet=kwargs["as_json"] or kwargs["dry_run"]) as bars:
        outcomes = deploy_many(hosts, options, _upload_observer(bars), parallel=kwargs["parallel"])
    if kwargs["as_json"]:
        objects = [o.result.to_json() if o.result else {"host": o.host, "error": o.error, "passed": False,
                                                         "npu_driver": o.npu_driver} for o in outcomes]
        several = {"hosts": objects, "passed": all(o.passed for o in outcomes)}
        click.echo(json.dumps(objects[0] if len(objects) == 1 else several, indent=2))
    else:
        _print_outcomes(outcomes, options.dry_run)
    for outcome in outcomes:
        if outcome.result and outcome.result.broke_lock:
            click.echo(f"{outcome.host}: broke the deploy lock held by {outcome.result.broke_lock}", err=True)
        for warning in (outcome.result.npu_driver.warnings() if outcome.result and outcome.result.npu_driver else []):
            click.echo(f"{outcome.host}: warning: NPU driver: {warning}", err=True)
    failed = [o for o in outcomes if not o.passed]
    if len(outcomes) == 1 and failed:
        raise _ErrorLine(failed[0].error or failed[0].result.failure)
    if failed:
        raise _ErrorLine(f"{len(failed)} of {len(outcomes)} board(s) failed: {', '.join(o.host for o in failed)}")


@click.command()
@board_options
@click.option("--to", "to_release", help="Release id to switch to [default: the one before current].")
@click.option("--break-lock", is_flag=True,
              help="Free the deploy lock of a client that is gone; says who held it.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@verbose_option
@board_command
def rollback(hosts, board, kwargs):
    """Point the board's `current` back at the previous release (atomically)."""
    from edgepad.deploy.pipeline import rollback_host

    results = [rollback_host(h, board, kwargs["to_release"], kwargs["break_lock"]) for h in hosts]
    for r in results:
        if r.get("broke_lock"):
            click.echo(f"{r['host']}: broke the deploy lock held by {r['broke_lock']}", err=True)
    if kwargs["as_json"]:
        click.echo(json.dumps(results[0] if len(results) == 1 else {"hosts": results}, indent=2))
        return
    for r in results:
        click.echo(f"{r['host']}: current {r['previous']} -> {r['current']}")


@click.command()
@board_options
@click.option("--verify", is_flag=True, help="Also check the sha256 of every file of the current release on the board.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON on stdout.")
@verbose_option
@board_command
def status(hosts, board, kwargs):
    """Show the board's current release, its models, the runtime backend, and board facts
    (Python version, CPU serial prefix: 290b is a VIM3, NPU driver version)."""
    from edgepad.deploy.status import board_status

    results = [board_status(h, board, verify=kwargs["verify"]) for h in hosts]
    if kwargs["as_json"]:
        click.echo(json.dumps(results[0] if len(results) == 1 else {"hosts": results}, indent=2))
    else:
        for s in results:
            _print_status(s)
    if any(s.get("corrupted_files") for s in results):
        raise _ErrorLine("files of the current release differ from its manifest: "
                         + ", ".join(f for s in results for f in s.get("corrupted_files", [])) + "; deploy again")


def _upload_observer(bars):
    """One upload bar per board, fed by the deploy's progress hooks (called from several threads)."""
    from edgepad.deploy.release import DeployObserver

    class UploadBars(DeployObserver):
        def phase(self, host: str, name: str) -> None:
            bars.update(host, description=f"{host} {name}")

        def upload_start(self, host: str, files: int, total_bytes: int) -> None:
            bars.start(host, f"{host} upload ({files} files)", max(total_bytes, 1))  # again after a sha256 mismatch

        def bytes_sent(self, host: str, path: str, sent: int) -> None:
            bars.advance(host, sent)

        def upload_end(self, host: str) -> None:
            bars.finish(host)

    return UploadBars()


class _ErrorLine(EdgepadError):
    """A failure already explained above; the CLI prints this one-line summary."""


def _print_outcomes(outcomes, dry_run: bool) -> None:
    from rich.console import Console

    console = Console(highlight=False)
    for outcome in outcomes:
        result = outcome.result
        if result is None:
            if len(outcomes) > 1:  # a single board's error is the command's own error line
                console.print(f"[red]✗[/red] {outcome.error}", soft_wrap=True)  # the error names its host
            continue
        if dry_run:
            plan = result.plan
            console.print(f"[cyan]dry run[/cyan] {outcome.host}: would create release {result.release} "
                          f"(current: {result.previous or 'none'}): send {len(plan['send'])} files, "
                          f"{plan['bytes_to_send'] / 1e6:.2f} MB, reuse {len(plan['reuse'])} on the board",
                          soft_wrap=True)
            for entry in plan["send"]:
                console.print(f"  send  {entry['path']} ({entry['size']} bytes)")
            for entry in plan["reuse"]:
                console.print(f"  reuse {entry['path']} (from {entry['from_release']})")
            continue
        if result.health is not None and result.health.outputs:
            _print_health(console, outcome.host, result.health)
            if result.health.cpu is not None and result.health.cpu.outputs:
                _print_health(console, outcome.host, result.health.cpu)
        if result.health is not None and result.health.library is not None:
            console.print(f"{outcome.host}: NPU libraries {result.health.library} "
                          f"({', '.join(f'{k}: {v}' for k, v in result.health.libraries.items()) or 'none'})",
                          soft_wrap=True)
        mark = "[green]✓[/green]" if result.passed else "[red]✗[/red]"
        state = ("health check passed" if result.health and result.health.passed else
                 "no health check" if result.health is None else
                 f"health check FAILED, current still {result.previous or 'no release'}")
        repaired = f", {len(result.files_repaired)} re-sent after sha256 mismatch" if result.files_repaired else ""
        console.print(f"{mark} {outcome.host}: release {result.release}, sent {result.files_uploaded} files "
                      f"({result.bytes_uploaded / 1e6:.2f} MB), reused {result.files_reused}{repaired}, {state}, "
                      f"{result.seconds:.1f} s", soft_wrap=True)


def _print_health(console, host: str, health) -> None:
    from rich.table import Table

    table = Table(title=f"{host}: board ({health.backend}) vs host", title_justify="left")
    for column in ("model", "output", "reference", "max abs", "cosine", "top-1", "decisions", "tolerance", "passed"):
        table.add_column(column)
    for row in health.outputs:
        top1 = row.get("top1_agreement")
        tolerance = f"abs ≤ {row['atol']:g}" if row.get("atol") is not None else (
            f"cos ≥ {row['min_cosine']:g}" if row.get("min_cosine") is not None else "-")
        decided = row.get("decision_agreement")
        table.add_row(row["model"], row["output"], row.get("reference", "host onnxruntime"),
                      f"{row.get('max_abs', float('nan')):.2e}", f"{row.get('cosine', float('nan')):.6f}",
                      "-" if top1 is None else f"{top1:.0%}", "-" if decided is None else f"{decided:.0%}", tolerance,
                      "[green]yes[/green]" if row["passed"] else "[red]no[/red]")
    console.print(table)
    if health.error:
        console.print(f"[red]{health.error}[/red]")


def _print_status(s: dict) -> None:
    board = s["board"]
    vim3 = ("VIM3 (serial 290b…)" if board["is_vim3"] else
            f"not a VIM3 (serial prefix {board['cpu_serial_prefix'] or 'none'})")
    click.echo(f"{s['host']}  {s['remote_dir']}")
    click.echo(f"  current release : {s['current'] or 'none'}  ({len(s['releases'])} on the board)")
    for name, model in s["models"].items():
        nbg = f", NBG format {model['nbg_format']}" if model.get("nbg_format") else ""
        nbg += f" by {model['toolkit']}" if model.get("toolkit") else ""
        click.echo(f"  model {name:10s}: {model['task']}, targets {', '.join(model['targets'])}{nbg}")
    click.echo(f"  runtime backend : {s['runtime_backend'] or '?'} (available: "
               f"{', '.join(s['available_backends']) or '?'})")
    driver = (f"galcore {board['npu_driver']} ({board.get('npu_driver_source')})" if board["npu_driver"] else
              f"none ({board.get('npu_driver_source') or 'no galcore'})")
    click.echo(f"  board           : Python {board['python']} on {board['machine']}, {vim3}")
    click.echo(f"  NPU driver      : {driver}")
    for check in (s.get("npu_driver_check") or {}).get("models", []):
        click.echo(f"  NBG vs driver   : {check['model']}: {check['verdict']}: {check['reason']}")
    mainline = (f"Teflon {board['teflon']}" if board.get("teflon") else "no Teflon delegate") + (
        ", etnaviv loaded" if board.get("etnaviv") else ", no etnaviv driver")
    click.echo(f"  mainline NPU    : {mainline} (the tflite backend's NPU path)")
    if "corrupted_files" in s:
        integrity = ("all files match the manifest" if not s["corrupted_files"] else
                     "CORRUPTED: " + ", ".join(s["corrupted_files"]))
        click.echo(f"  integrity       : {integrity}")
