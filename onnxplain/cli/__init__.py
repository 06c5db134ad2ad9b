"""The ``onnxplain`` command line: explain, demo, plugins, testnet, export, evaluate.

One module per command family; this one holds the group and how errors reach the user."""

from __future__ import annotations

import warnings

import click

from onnxplain.errors import OnnxplainError

_FLAGS = {
    "layout": "--layout", "channels": "--channels", "device": "--device", "scale": "--scale", "mean": "--mean",
    "std": "--std", "activation": "--activation", "output": "--output", "class_index": "--class",
    "segment": "--segment", "target": "--target", "method": "--method", "batch_size": "--batch-size",
    "masks": "--mask", "seed": "--seed", "score": "--score",
}
"""Core errors name the settings that fix them; the command line names its flags for them."""


def flag_advice(error: OnnxplainError) -> str:
    """The error's message, followed by the flags that fix it (``-p NAME=VALUE`` for method parameters)."""
    flags = [_FLAGS.get(name, f"-p {name}=VALUE") for name in error.parameters]
    return f"{error} ({'option' if len(flags) == 1 else 'options'} {', '.join(flags)})" if flags else str(error)


class _Cli(click.Group):
    """Prints problems the user can fix as one line (exit code 1); ``--debug`` shows tracebacks."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            with warnings.catch_warnings():
                # A warning (a duplicate plugin, say) as one line, not with the source line that raised it.
                warnings.showwarning = lambda message, *_args, **_kw: click.echo(f"Warning: {message}", err=True)
                return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except OnnxplainError as error:
            if ctx.params.get("debug"):
                raise
            raise click.ClickException(flag_advice(error)) from error
        except KeyboardInterrupt:
            raise click.ClickException("interrupted; no output was written for the unfinished work") from None
        except Exception as error:
            if ctx.params.get("debug"):
                raise
            raise click.ClickException(
                f"unexpected {type(error).__name__}: {error} (rerun with --debug to see the traceback)"
            ) from error


@click.group(cls=_Cli)
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(package_name="onnxplain")
def main(debug: bool) -> None:
    """Explain what made a segmentation network draw its mask, for any model exported to ONNX."""


def _register() -> None:
    from onnxplain.cli import evaluate, explain, tools

    for command in (explain.explain, explain.demo, tools.list_plugins, tools.testnet_group, tools.export_group,
                    evaluate.evaluate):
        main.add_command(command)


_register()
