"""The ``onnxplain`` command line: explain, demo, plugins, testnet, export, evaluate."""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from onnxplain import io, render, testnet
from onnxplain.errors import OnnxplainError, PluginError
from onnxplain.model import COLORS, DEVICES, LAYOUTS, OnnxModel
from onnxplain.outputs import ACTIVATIONS
from onnxplain.parameters import accepted_parameters, parse_parameters
from onnxplain.registry import plugins

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


# --- options shared by commands that run a model --------------------------------------------------


def model_options(command: Callable) -> Callable:
    """Add the options that say how to run and read the model."""
    options = [
        click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                     help="Execution provider: CUDA when it works here (auto), or forced."),
        click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
                     help="Perturbed images per forward pass; memory grows linearly with it."),
        click.option("--class", "class_index", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Output channel (class) to explain."),
        click.option("--output", default="0", show_default=True, help="Model output to explain, by index or name."),
        click.option("--activation", type=click.Choice(ACTIVATIONS), default="auto", show_default=True,
                     help="How outputs become probabilities."),
        click.option("--threshold", type=click.FloatRange(0, 1), default=None,
                     help="Probability above which a pixel is segmented [default: 0.5; argmax for softmax]."),
        click.option("--layout", type=click.Choice(LAYOUTS), default=None,
                     help="Input axis order [default: from the model]."),
        click.option("--channels", type=click.IntRange(min=1), default=None,
                     help="Image channels, if the model leaves them open."),
        click.option("--color", type=click.Choice(COLORS), default="rgb", show_default=True,
                     help="Channel order the model expects."),
        click.option("--scale", type=float, default=None,
                     help="Multiply images in [0, 1] by this before normalising [default: 1; 255 for uint8 inputs]."),
        click.option("--mean", default="0", show_default=True,
                     help="Subtracted after scaling: one value, or one per channel separated by commas."),
        click.option("--std", default="1", show_default=True,
                     help="Divides after the mean: one value, or one per channel."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def open_model(path: Path, options: dict) -> OnnxModel:
    """Load the model with the values of `model_options`."""
    return OnnxModel(
        path,
        device=options["device"],
        batch_size=options["batch_size"],
        layout=options["layout"],
        channels=options["channels"],
        color=options["color"],
        scale=options["scale"],
        mean=_floats(options["mean"], "--mean"),
        std=_floats(options["std"], "--std"),
        output=options["output"],
        class_index=options["class_index"],
        activation=options["activation"],
        threshold=options["threshold"],
    )


def read_model_image(path: Path, model: OnnxModel):
    """Read an image file converted to the channels the model takes (grayscale or RGB)."""
    return io.read_image(path, channels=model.input.channels if model.input.channels in (1, 3) else None)


def create_plugin(kind: str, name: str, pairs: tuple[str, ...]) -> object:
    """Create plugin `name` from ``NAME=VALUE`` strings, read by the types of its constructor."""
    return plugins.create(kind, name, **parse_parameters(plugins.get(kind, name), pairs))


def _floats(text: str, option: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a number or comma-separated numbers", param_hint=option) from None


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr counting forward passes, with their rate and the time left.

    It appears at the first update, so a run that fails before any forward pass prints only its error.
    """
    started = time.perf_counter()
    done = 0
    bar = None

    def update(count: int) -> None:
        nonlocal done, bar
        if bar is None:
            bar = click.progressbar(length=total, label=label, file=sys.stderr, show_eta=True, show_pos=True,
                                    item_show_func=lambda rate: rate)
            bar.__enter__()
        done += count
        bar.update(count, f"{done / max(time.perf_counter() - started, 1e-9):.1f} img/s")

    try:
        yield update
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


# --- explain ---------------------------------------------------------------------------------------


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.argument("image_path", metavar="IMAGE", type=click.Path(path_type=Path))
@click.option("--segment", type=click.Path(path_type=Path), default=None,
              help="Ground-truth segment (an image, non-zero = in the segment) [default: the model's own prediction].")
@click.option("--method", "methods", multiple=True, default=("hdm",), show_default=True,
              help="Method: hdm, rise, occlusion, ablation, lime, kernel-shap, shapley, or any installed one "
                   "(see `onnxplain plugins`); repeatable, and several share the unperturbed forward pass.")
@click.option("-p", "--param", "params", multiple=True, metavar="[METHOD:]NAME=VALUE",
              help="A parameter of the method, e.g. -p offset=5; with several methods, -p hdm:offset=5.")
@click.option("--score", default=None,
              help="Score: hausdorff, dice, class-score, or an installed one [default: the method's].")
@click.option("--score-param", "score_params", multiple=True, metavar="NAME=VALUE", help="A parameter of the score.")
@click.option("--target", default="class", show_default=True,
              help="What to explain: class, mask:PATH, box:X0,Y0,X1,Y1 or pixels:X,Y;X,Y.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: onnxplain-out/IMAGE-METHOD]; with several methods, one subfolder each.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of every random choice.")
@click.option("--per-pixel-max", is_flag=True,
              help="For RISE: also merge the per-pixel maps by their maximum (rise_max.npy, rise_max.png); "
                   "the same as -p per_pixel_max=true.")
@click.option("--color-map", default="jet", show_default=True, help="Matplotlib colormap of the pictures.")
@model_options
def explain(model_path, image_path, segment, methods, params, score, score_params, target, out, seed,
            per_pixel_max, color_map, **model_settings):
    """Explain which pixels of IMAGE made MODEL (an .onnx file) segment what it segmented."""
    from onnxplain.method import make_baseline
    from onnxplain.targets import Target

    if per_pixel_max:
        if "rise" not in methods:
            raise OnnxplainError("--per-pixel-max is an option of RISE; add --method rise")
        params = (*params, "rise:per_pixel_max=true" if len(methods) > 1 else "per_pixel_max=true")
    model = open_model(model_path, model_settings)
    image = read_model_image(image_path, model)
    ground_truth = io.read_mask(segment) if segment is not None else None
    scorer = create_plugin("score", score, score_params) if score else None
    chosen = [create_method(name, _method_params(params, name, methods), seed=seed, score=scorer)
              for name in methods]
    goal = Target.parse(target).of_class(model_settings["class_index"], model_settings["output"])
    baseline = make_baseline(model, image, goal, segment=ground_truth)
    totals = [method.count(baseline.image) or 0 for method in chosen]  # every method's masks, checked before any runs
    base_out = out or Path("onnxplain-out") / (f"{image_path.stem}-{methods[0]}" if len(methods) == 1
                                               else image_path.stem)
    for name, method, total in zip(methods, chosen, totals, strict=True):
        with progress_bar(total, f"{name} ({total} images)") as update:
            result = method.attribute(model, baseline.image, goal, baseline=baseline,
                                      batch_size=model_settings["batch_size"], progress=update)
        folder = base_out if len(methods) == 1 else base_out / name
        extra = {"image_file": str(image_path), "segment_file": str(segment) if segment else None}
        written = result.save(folder, color_map=color_map, extra=extra)
        seconds = result.seconds
        click.echo(
            f"{name} with {result.record.get('score', {}).get('name', 'its score')}: {len(result.values)} images "
            f"in {seconds['total']:.1f} s (inference {seconds.get('inference', 0.0):.1f} s on {model.device}); "
            f"{len(written)} files in {folder}"
        )


def create_method(name: str, pairs: tuple[str, ...], *, seed: int, score: object = None) -> object:
    """Create method `name` from ``NAME=VALUE`` strings, with the run's seed and score where it takes them."""
    from onnxplain.api import create_method as create

    values = parse_parameters(plugins.get("method", name), pairs)
    takes_seed = "seed" in accepted_parameters(plugins.get("method", name))
    return create(name, seed=values.pop("seed", seed) if takes_seed else None, score=score, **values)


def _method_params(pairs: tuple[str, ...], name: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """The parameters of method `name`: all of them with one method, else those written METHOD:NAME=VALUE."""
    if len(names) == 1 and not any(p.partition("=")[0].partition(":")[1] for p in pairs):
        return pairs
    return _scoped(pairs, name, names, "--param")


# --- demo ----------------------------------------------------------------------------------------


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("onnxplain-demo"), show_default=True,
              help="Output folder.")
@click.option("--sample", type=click.IntRange(min=0), default=0, show_default=True, help="Bundled sample to explain.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
def demo(out, sample, device, batch_size):
    """Explain a bundled testnet sample with HDM and RISE and write the pictures."""
    from onnxplain import data
    from onnxplain.method import make_baseline

    model = OnnxModel(data.testnet_model_path(), device=device, batch_size=batch_size)
    chosen = data.load_sample(sample)
    baseline = make_baseline(model, chosen.image)
    pictures = [render.picture(chosen.image), render.mask_overlay(chosen.image, baseline.output.mask[0])]
    titles = [f"sample {sample} (decider: {chosen.decider_shape})", "model's segment"]
    for name in ("hdm", "rise"):
        method = plugins.create("method", name)  # each method with its defaults
        total = method.count(baseline.image)
        with progress_bar(total, f"{name} ({total} images)") as update:
            result = method.attribute(model, baseline.image, baseline=baseline, progress=update)
        result.save(out / name, extra={"sample": sample})
        pictures.append(render.overlay(result.image, result.map))
        titles.append(f"{name} ({result.record['score']['name']})")
    summary = render.grid(pictures, titles, columns=4)
    io.save_png(summary, out / "demo.png")
    click.echo(f"wrote {out / 'demo.png'} and the maps of each method in {out}/hdm and {out}/rise")


# --- plugins -------------------------------------------------------------------------------------


@main.command("plugins")
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


# --- testnet -------------------------------------------------------------------------------------


@main.group("testnet")
def testnet_group():
    """The testnet dataset: the decider shape on the right picks the segment on the left."""


@testnet_group.command("generate")
@click.option("--count", type=click.IntRange(min=1), required=True, help="Number of samples.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the dataset.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write.")
def testnet_generate(count, seed, out):
    """Write COUNT samples: images/, segments/, shapes/{target,decider,distractor}/, samples.csv."""
    testnet.write_dataset(out, count, seed=seed)
    click.echo(f"wrote {count} testnet samples (seed {seed}) to {out}")


# --- export --------------------------------------------------------------------------------------


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


@main.group("export", cls=_ExportGroup)
def export_group():
    """Export a model of another framework to ONNX (exporters are plugins)."""


# --- evaluate ------------------------------------------------------------------------------------

_DEFAULT_METRICS = ("deletion", "insertion", "infidelity")
_REGION_METRICS = ("pointing-game", "relevance-mass")


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.argument("image_path", metavar="[IMAGE]", required=False, type=click.Path(path_type=Path))
@click.option("--dataset", type=click.Path(path_type=Path), default=None,
              help="A folder to evaluate instead of IMAGE: images/, optional segments/ and shapes/REGION/.")
@click.option("--method", "methods", multiple=True, default=("hdm", "rise"), show_default=True,
              help="Explanation method; repeatable.")
@click.option("-p", "--param", "params", multiple=True, metavar="METHOD:NAME=VALUE",
              help="A parameter of one method, e.g. -p hdm:offset=5; repeatable.")
@click.option("--metric", "metrics", multiple=True,
              help="Metric; repeatable [default: deletion, insertion, infidelity, and pointing-game and "
                   "relevance-mass when regions are given]. max-sensitivity re-runs each explanation.")
@click.option("--metric-param", "metric_params", multiple=True, metavar="METRIC:NAME=VALUE",
              help="A parameter of one metric, e.g. --metric-param deletion:substrate=blur.")
@click.option("--score", default=None, help="Score of the explanations [default: each method's].")
@click.option("--segment", type=click.Path(path_type=Path), default=None, help="Ground-truth segment of IMAGE.")
@click.option("--mask", "masks", multiple=True, metavar="NAME=PNG", help="A named region of IMAGE; repeatable.")
@click.option("--target", default="class", show_default=True, help="What to explain, as for explain.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: onnxplain-eval/IMAGE-or-DATASET].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@model_options
def evaluate(model_path, image_path, dataset, methods, params, metrics, metric_params, score, segment, masks,
             target, out, seed, **model_settings):
    """Measure how faithful each method's maps are on IMAGE (or a --dataset) for MODEL.

    Writes evaluation.csv and evaluation.json (one row per image and method, and means per method)
    and curves.png (deletion and insertion curves against a random pixel order).
    """
    from onnxplain.evaluation.runner import Item, read_dataset
    from onnxplain.evaluation.runner import evaluate as run_evaluation
    from onnxplain.targets import Target

    if (image_path is None) == (dataset is None):
        raise click.UsageError("give either IMAGE or --dataset DIR")
    model = open_model(model_path, model_settings)
    channels = model.input.channels if model.input.channels in (1, 3) else None
    if dataset is not None:
        count = len(list((Path(dataset) / "images").glob("*.png")))
        items = read_dataset(dataset, channels=channels)
    else:
        regions = dict(_named_path(text) for text in masks)
        items = [Item(name=image_path.name, image=read_model_image(image_path, model),
                      segment=io.read_mask(segment) if segment else None,
                      masks={name: io.read_mask(path) for name, path in regions.items()})]
        count = 1
    has_regions = bool(masks) or (dataset is not None and (Path(dataset) / "shapes").is_dir())
    metrics = metrics or _DEFAULT_METRICS + (_REGION_METRICS if has_regions else ())
    scorer = create_plugin("score", score, ()) if score else None
    method_plugins = [create_method(m, _scoped(params, m, methods, "--param"), seed=seed, score=scorer)
                      for m in methods]
    metric_plugins = [create_plugin("metric", m, _scoped(metric_params, m, metrics, "--metric-param"))
                      for m in metrics]
    with progress_bar(count * len(method_plugins), "explanations evaluated") as update:
        goal = Target.parse(target).of_class(model_settings["class_index"], model_settings["output"])
        table = run_evaluation(model, items, methods=method_plugins, metrics=metric_plugins, target=goal,
                               seed=seed, batch_size=model_settings["batch_size"], progress=update)
    out = out or Path("onnxplain-eval") / (image_path.stem if image_path else Path(dataset).name)
    written = table.save(out)
    for method, means in table.means().items():
        shown = ", ".join(f"{k} {v:.3g}" for k, v in means.items() if k != "explain_seconds")
        click.echo(f"{method}: {shown}")
    click.echo(f"wrote {', '.join(p.name for p in written)} to {out}")


def _named_path(text: str) -> tuple[str, Path]:
    name, separator, path = text.partition("=")
    if not separator or not name:
        raise click.BadParameter(f"{text!r} is not NAME=PNG", param_hint="--mask")
    return name, Path(path)


def _scoped(pairs: tuple[str, ...], name: str, names: tuple[str, ...], option: str) -> tuple[str, ...]:
    """The NAME=VALUE parts of `pairs` written PLUGIN:NAME=VALUE for plugin `name`."""
    chosen = []
    for pair in pairs:
        plugin, separator, rest = pair.partition(":")
        if not separator or plugin not in names:
            raise click.BadParameter(f"{pair!r} must start with one of {', '.join(names)} and a colon",
                                     param_hint=option)
        if plugin == name:
            chosen.append(rest)
    return tuple(chosen)
