"""`edgepad toolkit install|doctor`: the VeriSilicon acuitylite environment the vim3 target compiles with."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgepad.commands.options import verbose_option

_home_option = click.option(
    "--home", type=click.Path(path_type=Path), envvar="EDGEPAD_TOOLKIT_HOME",
    help="Toolkit folder (default: $EDGEPAD_TOOLKIT_HOME, else $EDGEPAD_HOME/toolkit, else ~/.cache/edgepad/toolkit).")


@click.group()
def toolkit() -> None:
    """The VeriSilicon NPU toolkit (acuitylite) in its own virtual environment.

    \b
    acuitylite pins TensorFlow 2.17, numpy 1.26 and protobuf 3.20 and needs torch, so it cannot share
    edgepad's environment; edgepad runs it as a subprocess and talks to it through files.
    """


@toolkit.command("install")
@click.option("--python", "python", type=click.Path(path_type=Path),
              help="Python 3.10, 3.12 or 3.8 to build the environment with (default: found on PATH or under pyenv).")
@_home_option
@click.option("--force", is_flag=True, help="Rebuild even if the environment is already installed.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@verbose_option
def install(python, home, force, as_json):
    """Create the toolkit environment (acuitylite 6.57.1 and torch; about 8 GB). Does nothing if it exists."""
    from edgepad.convert.vim3.toolkit_env import human_size, install_toolkit
    from edgepad.progress import Steps

    result = install_toolkit(python=python, home=home, steps=Steps(quiet=as_json), force=force)
    if as_json:
        click.echo(json.dumps({"home": str(result.home), "python": result.python_version, "versions": result.versions,
                               "size_bytes": result.size_bytes, "already_installed": result.already_installed,
                               "nbg_sdks": result.nbg_sdks, "log": str(result.log) if result.log else None}, indent=2))
        return
    state = "already installed" if result.already_installed else "installed"
    click.echo(f"toolkit {state} in {result.home} ({human_size(result.size_bytes)}, Python {result.python_version}, "
               f"acuitylite {result.versions.get('acuitylite')}, torch {result.versions.get('torch')})")
    for nbg_format, sdk in sorted(result.nbg_sdks.items()):
        click.echo(f"  NBG format {nbg_format}.x: acuitylite {sdk['acuitylite']}'s vsi_sdk in {sdk['path']} "
                   f"({human_size(sdk['size_bytes'])})")


@toolkit.command("doctor")
@_home_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@verbose_option
def doctor(home, as_json):
    """Check the toolkit environment: versions, the bundled Vivante SDK, and the boards it can compile for."""
    from edgepad.convert.vim3.toolkit_env import doctor as run_doctor
    from edgepad.convert.vim3.toolkit_env import human_size

    report = run_doctor(home)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"toolkit environment: {report['home']} ({human_size(report['size_bytes'])}, Python {report['python']})")
    for name in ("acuitylite", "tensorflow", "numpy", "torch", "onnx"):
        click.echo(f"  {name:<11} {report['versions'].get(name)}")
    sdk = report["sdk"]
    click.echo(f"vsi_sdk: {sdk['path']}: " + (f"ok, the emulator knows {sdk['targets_known']} NPU targets"
                                               if sdk["ok"] else "MISSING: run `edgepad toolkit install --force`"))
    for nbg_format, info in sorted(report["nbg_sdks"].items()):
        click.echo(f"  NBG format {nbg_format}.x (--nbg-format {nbg_format}): acuitylite {info['acuitylite']}'s "
                   "vsi_sdk "
                   + (f"ok ({human_size(info['size_bytes'])})" if info["ok"] else
                      "MISSING: run `edgepad toolkit install`"))
    for board, info in report["boards"].items():
        verdict = "can compile" if info["can_compile"] else \
            "cannot compile (this toolkit does not know the target; use --npu-toolkit khadas-sdk)"
        click.echo(f"  --board {board:<6} {info['target']}: {verdict}")

