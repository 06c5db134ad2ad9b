"""The ``onnxplain`` command line: explain, demo, plugins, testnet, export, evaluate.

One module per command family; this one holds the group and how errors reach the user."""

from __future__ import annotations

import importlib
import warnings

import click

from onnxplain.errors import OnnxplainError

_FLAGS = {
    "layout": "--layout", "channels": "--channels", "device": "--device", "scale": "--scale", "mean": "--mean",
    "std": "--std", "activation": "--activation", "output": "--output", "class_index": "--class",
    "segment": "--segment", "target": "--target", "method": "--method", "batch_size": "--batch-size",
    "masks": "--mask", "seed": "--seed", "score": "--score", "resize": "--resize", "out": "--out",
    "dataset": "--dataset", "layer": "-p layer=NAME", "precision": "--precision", "min_dice": "--min-dice",
    "min_correlation": "--min-correlation", "threads": "--threads", "optimization": "--optimization",
}
"""Core errors name the settings that fix them; the command line names its flags for them."""


def flag_advice(error: OnnxplainError) -> str:
    """The error's message, followed by the flags that fix it (``-p NAME=VALUE`` for method parameters)."""
    flags = [_FLAGS.get(name, f"-p {name}=VALUE") for name in error.parameters]
    return f"{error} ({'option' if len(flags) == 1 else 'options'} {', '.join(flags)})" if flags else str(error)


_COMMANDS = {
    "explain": ("onnxplain.cli.explain", "explain"),
    "demo": ("onnxplain.cli.explain", "demo"),
    "evaluate": ("onnxplain.cli.evaluate", "evaluate"),
    "plugins": ("onnxplain.cli.tools", "list_plugins"),
    "testnet": ("onnxplain.cli.tools", "testnet_group"),
    "export": ("onnxplain.cli.tools", "export_group"),
    "layers": ("onnxplain.cli.tools", "list_layers"),
    "serve": ("onnxplain.cli.serve", "serve"),
}
"""Each command's module, imported only when the command runs or is listed: onnxruntime and the
rest load inside the error handling below, so even an interruption during start-up is one line."""


class _Cli(click.Group):
    """Prints problems the user can fix as one line (exit code 1); ``--debug`` shows tracebacks."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        module, attribute = _COMMANDS[name]
        return getattr(importlib.import_module(module), attribute)

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
            # One line, whatever the message quotes (a library's error may span several).
            raise click.ClickException(" ".join(flag_advice(error).split())) from error
        except MemoryError:
            raise click.ClickException("ran out of memory; use a smaller --batch-size, or explain a smaller image "
                                       "(nothing was written for the unfinished work)") from None
        except KeyboardInterrupt:
            raise click.ClickException("interrupted; nothing was written for the unfinished work") from None
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
