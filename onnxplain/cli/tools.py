"""``onnxplain plugins``, ``onnxplain testnet`` and ``onnxplain export``."""

from __future__ import annotations

from pathlib import Path

import click

from onnxplain import testnet
from onnxplain.errors import PluginError
from onnxplain.registry import plugins


@click.command("plugins")
def list_plugins():
    """List installed plugins: kind, name, package, version and status."""
    rows = [("KIND", "NAME", "PACKAGE", "VERSION", "STATUS")]
    problems = []
    for info in plugins.describe():
        rows.append((info.kind, info.name, info.distribution, info.version, info.status))
        if info.error:
            problems.append(f"  {info.kind} {info.name!r} ({info.target}): {info.error}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if problems:
        click.echo("\nBroken plugins (the others work):\n" + "\n".join(problems))


@click.group("testnet")
def testnet_group():
    """The testnet dataset: the decider shape on the right picks the segment on the left."""


@testnet_group.command("generate")
@click.option("--count", type=click.IntRange(min=1), required=True, help="Number of samples.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the dataset.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write.")
@click.option("--3d", "volumes", is_flag=True,
              help="3-D volumes (48^3 NIfTI): a sphere or a cube decides between a cross and a pyramid.")
def testnet_generate(count, seed, out, volumes):
    """Write COUNT samples: images/, segments/, shapes/{target,decider,distractor}/, samples.csv."""
    if volumes:
        from onnxplain import testnet3d

        testnet3d.write_volumes(out, count, seed=seed)
        click.echo(f"wrote {count} 3-D testnet volumes (seed {seed}) to {out}")
        return
    testnet.write_dataset(out, count, seed=seed)
    click.echo(f"wrote {count} testnet samples (seed {seed}) to {out}")


class _ExportGroup(click.Group):
    """One subcommand per installed exporter plugin; a broken one stays listed, marked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(plugins.names("exporter"))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in plugins.names("exporter"):
            return None
        try:
            return plugins.create("exporter", name).command()
        except PluginError as error:
            return _broken_command(name, error)


def _broken_command(name: str, error: PluginError) -> click.Command:
    def fail() -> None:
        raise error

    return click.Command(name, callback=fail, help=f"(broken) {error}", short_help="(broken plugin) see its --help")


@click.group("export", cls=_ExportGroup)
def export_group():
    """Export a model of another framework to ONNX (exporters are plugins)."""




@click.command("layers")
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.option("--all", "show_all", is_flag=True, help="List every tensor, not only 4-D feature maps.")
def list_layers(model_path, show_all):
    """List the layers (intermediate tensors) of MODEL that activation methods can read.

    The one marked * is the default: the feature map the model's head reads; b marks the
    bottleneck (the last feature map of the smallest size), where global evidence shows. Give
    another to a method with -p layer=NAME.
    """
    from onnxplain.layers import bottleneck_layer, default_layer
    from onnxplain.layers import list_layers as read_layers
    from onnxplain.signature import load_graph

    graph = load_graph(model_path)  # a missing or foreign file says so in one line
    layers = read_layers(model_path)
    chosen = default_layer(layers, graph.output[0].name).name if any(layer.feature_map for layer in layers) else None
    found = bottleneck_layer(layers)
    bottleneck = found.name if found is not None else None
    rows = [("", "NAME", "OP", "SHAPE")]
    for layer in layers:
        if show_all or layer.feature_map:
            shape = "x".join("?" if not isinstance(side, int) else str(side) for side in layer.shape) or "?"
            mark = "*" if layer.name == chosen else "b" if layer.name == bottleneck else ""
            rows.append((mark, layer.name, layer.op, shape))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    shown = "" if show_all else " (4-D feature maps; --all for every one)"
    click.echo(f"{len(rows) - 1} of {len(layers)} tensors{shown}")
