"""Click options and decorators several `edgepad` commands share (imported by the commands, never the reverse)."""
from __future__ import annotations

import functools
from pathlib import Path

import click

from edgepad.errors import UsageError


def _set_verbose(ctx: click.Context, _param, value: bool) -> None:
    if value:
        ctx.meta["edgepad.verbose"] = True  # click shares meta with every nested context; the CLI group reads it


verbose_option = click.option(
    "--verbose", "-v", is_flag=True, expose_value=False, is_eager=True, callback=_set_verbose,
    help="Show full tracebacks and tool logs on failure.",
)


def board_options(command):
    """--host/--inventory and the SSH options every board command shares."""
    options = [
        click.option("--host", "hosts", multiple=True, help="Board as [user@]host[:port]; repeat for several boards."),
        click.option("--inventory", type=click.Path(path_type=Path),
                     help="File of boards: one per line, or an Ansible INI inventory."),
        click.option("--port", type=int, default=22, show_default=True, help="SSH port (unless the host names one)."),
        click.option("--user", default="khadas", show_default=True, help="SSH user (unless the host names one)."),
        click.option("--identity", type=click.Path(path_type=Path),
                     help="Private key file (default: the ssh agent and ~/.ssh keys)."),
        click.option("--known-hosts", type=click.Path(path_type=Path),
                     help="known_hosts file [default: ~/.ssh/known_hosts]."),
        click.option("--trust-new-host", is_flag=True,
                     help="Accept and record a board's host key seen for the first time. A changed key is always "
                          "refused."),
        click.option("--remote-dir", default="~/edgepad", show_default=True,
                     help="Folder on the board holding releases/ and current."),
        click.option("--remote-python", default="python3", show_default=True,
                     help="Python 3.8+ on the board that runs the runtime."),
        click.option("--connect-timeout", type=float, default=15, show_default=True,
                     help="Seconds to wait for connect, banner and auth."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def board_command(function):
    """Turns board_options' keyword arguments into (hosts, BoardOptions, the other keyword arguments)."""
    @functools.wraps(function)
    def wrapper(**kwargs):
        kwargs.setdefault("keep_arg", None)
        hosts, board = _hosts_and_board(kwargs)
        return function(hosts, board, kwargs)
    return wrapper


def _hosts_and_board(kwargs: dict):
    from edgepad.deploy.inventory import parse_host, read_inventory, unique
    from edgepad.deploy.pipeline import BoardOptions
    from edgepad.deploy.ssh import SshOptions

    hosts = [parse_host(h, kwargs["user"], kwargs["port"]) for h in kwargs["hosts"]]
    if kwargs["inventory"]:
        hosts += read_inventory(kwargs["inventory"], kwargs["user"], kwargs["port"])
    if not hosts:
        raise UsageError("no board given: pass --host HOST (repeatable) or --inventory FILE")
    if kwargs["keep_arg"] is not None and kwargs["keep_arg"] < 1:
        raise UsageError(f"--keep {kwargs['keep_arg']}: keep at least 1 release")
    ssh = SshOptions(kwargs["identity"], kwargs["known_hosts"], kwargs["trust_new_host"], kwargs["connect_timeout"])
    return unique(hosts), BoardOptions(ssh, kwargs["remote_dir"], kwargs["remote_python"])
