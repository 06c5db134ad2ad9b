"""What the commands share: the model options, plugin creation from NAME=VALUE, the progress bar."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import numpy as np

from onnxplain import io
from onnxplain.model import COLORS, DEVICES, LAYOUTS, OnnxModel
from onnxplain.outputs import ACTIVATIONS
from onnxplain.parameters import accepted_parameters, parse_parameters
from onnxplain.precision import PRECISIONS
from onnxplain.registry import plugins
from onnxplain.session import OPTIMIZATIONS


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
                     help="Channel order the model expects; images are read as RGB and flipped for bgr."),
        click.option("--scale", type=float, default=None,
                     help="Multiply images in [0, 1] by this before normalising [default: 1; 255 for uint8 inputs]."),
        click.option("--mean", default="0", show_default=True,
                     help="Subtracted after scaling: one value, or one per channel separated by commas, in the "
                          "channel order the model receives (B,G,R with --color bgr), as model cards write it."),
        click.option("--std", default="1", show_default=True,
                     help="Divides after the mean: one value, or one per channel, in the model's channel order."),
        click.option("--resize", is_flag=True,
                     help="Resize images to a fixed-size model's input, and its output back to the image."),
        click.option("--patch", default=None, metavar="D,H,W",
                     help="Run the model on patches of this size sliding over the volume, blended with Gaussian "
                          "weights [default: a fixed-size 3-D model's own size; none otherwise]."),
        click.option("--overlap", type=click.FloatRange(0, 1, max_open=True), default=0.5, show_default=True,
                     help="Share of a patch that the next patch covers again."),
        click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
                     help="Precision of the forward passes: fp16 converted, int8 calibrated on the image; either is "
                          "checked against fp32 on the image first and refused if it changes the answer."),
        click.option("--min-dice", type=click.FloatRange(0, 1), default=0.95, show_default=True,
                     help="A reduced precision is refused when its segment's Dice with fp32's is below this."),
        click.option("--min-correlation", type=click.FloatRange(-1, 1), default=0.95, show_default=True,
                     help="... or when its scores of perturbed copies of the image correlate less than this "
                          "with fp32's."),
        click.option("--threads", type=click.IntRange(min=1), default=None,
                     help="onnxruntime's threads per operator [default: the physical cores]."),
        click.option("--optimization", type=click.Choice(OPTIMIZATIONS), default="all", show_default=True,
                     help="onnxruntime's graph optimisation level."),
        click.option("--cache", "cache", type=click.Path(path_type=Path), default=None,
                     help="Folder of optimised graphs and reduced models kept between runs "
                          "[default: $ONNXPLAIN_CACHE, else ~/.cache/onnxplain]."),
        click.option("--no-cache", is_flag=True, help="Keep no optimised graph or reduced model on disk."),
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
        mean=floats(options["mean"], "--mean"),
        std=floats(options["std"], "--std"),
        output=options["output"],
        class_index=options["class_index"],
        activation=options["activation"],
        threshold=options["threshold"],
        resize=options["resize"],
        patch=None if options["patch"] is None else _integers(options["patch"], "--patch"),
        overlap=options["overlap"],
        precision=options["precision"],
        min_dice=options["min_dice"],
        min_correlation=options["min_correlation"],
        threads=options["threads"],
        optimization=options["optimization"],
        cache=False if options["no_cache"] else options["cache"] or True,
    )


def read_model_image(path: Path, model: OnnxModel):
    """Read an image file converted to the channels the model takes (grayscale or RGB)."""
    return io.read_image(path, channels=model.input.channels if model.input.channels in (1, 3) else None)


def create_plugin(kind: str, name: str, pairs: tuple[str, ...]) -> object:
    """Create plugin `name` from ``NAME=VALUE`` strings, read by the types of its constructor."""
    return plugins.create(kind, name, **parse_parameters(plugins.get(kind, name), pairs))


def _integers(text: str, option: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not comma-separated whole numbers", param_hint=option) from None


def floats(text: str, option: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a number or comma-separated numbers", param_hint=option) from None


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr counting forward passes, with their rate and the time left.

    It appears at the first update, so a run that fails before any forward pass prints only its error.
    A method that cannot say its total beforehand (0) gets a count without a bar.
    """
    started = time.perf_counter()
    done = 0
    bar = None

    def update(count: int) -> None:
        nonlocal done, bar
        if bar is None:
            bar = click.progressbar(length=max(total, 1), label=label, file=sys.stderr, show_eta=total > 0,
                                    show_pos=True, show_percent=total > 0, item_show_func=lambda rate: rate)
            bar.__enter__()
        done += count
        bar.update(count, f"{done / max(time.perf_counter() - started, 1e-9):.1f} img/s")

    try:
        yield update
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


def scoped(pairs: tuple[str, ...], name: str, names: tuple[str, ...], option: str) -> tuple[str, ...]:
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


def create_method(name: str, pairs: tuple[str, ...], *, seed: int, score: object = None) -> object:
    """Create method `name` from ``NAME=VALUE`` strings, with the run's seed and score where it takes them."""
    from onnxplain.api import create_method as create

    values = parse_parameters(plugins.get("method", name), pairs)
    takes_seed = "seed" in accepted_parameters(plugins.get("method", name))
    return create(name, seed=values.pop("seed", seed) if takes_seed else None, score=score, **values)


def method_params(pairs: tuple[str, ...], name: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """The parameters of method `name`: all of them with one method, else those written METHOD:NAME=VALUE."""
    if len(names) == 1 and not any(p.partition("=")[0].partition(":")[1] for p in pairs):
        return pairs
    return scoped(pairs, name, names, "--param")


def result_bytes(image: np.ndarray, results: int) -> int:
    """About the disk space that `results` saved attributions of `image` (*spatial, C) take (arrays, pictures)."""
    return int(np.prod(image.shape[:-1])) * 64 * results
