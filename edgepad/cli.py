"""The `edgepad` command. Each subcommand parses options and calls one plain function (the Python API).

Heavy imports (TensorFlow, the toolkit, paramiko) happen inside those functions, so `edgepad --help` is instant.
"""
from __future__ import annotations

import os
import traceback

import click

from edgepad import __version__
from edgepad.commands import bench, bundle, convert, data, deploy, models, run, toolkit
from edgepad.commands.options import verbose_option
from edgepad.errors import EdgepadError


class EdgepadGroup(click.Group):
    """Turns every edgepad error into one line on stderr and a non-zero exit; a traceback only with --verbose."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgepadError as error:
            self._fail(ctx, f"error: {error}", error.exit_code)
        except KeyboardInterrupt:
            self._fail(ctx, "interrupted", 130)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as error:  # a bug of ours: still one line, the traceback on request
            self._fail(ctx, f"internal error: {type(error).__name__}: {error} (run again with --verbose for the "
                       "traceback)", 70)

    @staticmethod
    def _fail(ctx: click.Context, message: str, code: int) -> None:
        verbose = bool(ctx.meta.get("edgepad.verbose"))  # click shares meta with every nested context
        if verbose:
            traceback.print_exc()
        click.echo(message.splitlines()[0] if not verbose else message, err=True)
        ctx.exit(code)


@click.group(cls=EdgepadGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgepad")
@verbose_option
def cli() -> None:
    """Put a Keras face anti-spoofing model on a Khadas VIM3 NPU, checked at every step.

    \b
    edgepad convert MODEL.h5 -o OUT      Keras -> ONNX -> Caffe -> VIM3 NBG, each parity-checked
    edgepad run IMAGE --bundle DIR        detect, align and classify faces on the host
    edgepad deploy BUNDLE --host H        push to the board over SSH, verified, with rollback
    """


# Every command, in the order of the workflow (`edgepad --help` lists them alphabetically).
COMMANDS = (
    convert.convert, toolkit.toolkit, models.models, run.run, bundle.bundle,
    deploy.deploy, deploy.status, deploy.rollback, bench.bench,
    data.extract, data.train, data.evaluate,
)
for _command in COMMANDS:
    cli.add_command(_command)


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter is not ours to print
    cli(prog_name="edgepad")

