"""Pictures of saliency maps: heatmap, heatmap over the image, isolines over the image, grids.

Pictures are made from an `Attribution`'s saved data alone, so a reloaded attribution draws the
same pictures as a fresh one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from onnxplain.errors import OnnxplainError

if TYPE_CHECKING:
    from onnxplain.attribution import Attribution

CIRCLE_KINDS = ("raw", "better", "worse")


def pictures(attribution: Attribution, *, color_map: str = "jet") -> dict[str, Image.Image]:
    """Every picture of a 2-D attribution, by file name (without ``.png``).

    ``heatmap``, ``overlay`` and ``isolines`` always; ``circles_raw``, ``circles_better`` and
    ``circles_worse`` when the attribution holds circles (HDM); ``rise_max`` when it holds RISE's
    per-pixel maximum. Maps with other than two spatial axes get none.
    """
    saliency, image = attribution.map, attribution.image
    if saliency.ndim != 2:
        return {}
    made = {
        "heatmap": heatmap(saliency, color_map=color_map),
        "overlay": overlay(image, saliency, color_map=color_map),
        "isolines": isolines(image, saliency, color_map=color_map),
    }
    if "circles" in attribution.arrays:
        for kind in CIRCLE_KINDS:
            values = circle_values(attribution.values, attribution.baseline_value, kind)
            made[f"circles_{kind}"] = circle_map(values, attribution.arrays["circles"], saliency.shape,
                                                 color_map="Reds")
    if "rise_max" in attribution.arrays:
        made["rise_max"] = overlay(image, attribution.arrays["rise_max"], color_map=color_map)
    return made


def circle_values(values: np.ndarray, baseline: float, kind: str) -> np.ndarray:
    """Per-circle values: ``'raw'`` distances, or how much ``'better'`` (closer) or ``'worse'`` (further)
    than the unperturbed `baseline` each circle left the output, 0 otherwise."""
    if kind == "raw":
        return np.array(values, dtype=np.float64)
    if kind == "better":
        return np.maximum(baseline - values, 0.0)
    if kind == "worse":
        return np.maximum(values - baseline, 0.0)
    raise OnnxplainError(f"circle values are one of {', '.join(CIRCLE_KINDS)}, not {kind!r}")


def circle_map(values: np.ndarray, circles: np.ndarray, shape: tuple[int, int], *,
               color_map: str = "Reds") -> Image.Image:
    """Draw every circle in the colour of its value, strongest on top (the 2019 HDM picture).

    Parameters
    ----------
    values : ndarray, shape (n,)
        One value per circle, scaled from their minimum to their maximum.
    circles : ndarray, shape (n, 3)
        Row, column and radius of every circle.
    shape : tuple of int
        Height and width of the picture.
    color_map : str
        A matplotlib colormap name.
    """
    colors = colorize(normalize(values), color_map)[:, :3]
    picture = Image.new("RGB", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(picture)
    for i in np.argsort(values, kind="stable"):
        row, column, radius = circles[i]
        draw.ellipse((column - radius, row - radius, column + radius, row + radius),
                     fill=tuple(int(c) for c in colors[i]))
    return picture


def normalize(values: np.ndarray) -> np.ndarray:
    """Scale `values` linearly to [0, 1], minimum to 0 and maximum to 1; all zeros if constant.

    Examples
    --------
    >>> normalize(np.array([2.0, 4.0, 3.0]))
    array([0. , 1. , 0.5])
    """
    values = np.asarray(values, dtype=np.float64)
    low, high = np.nanmin(values), np.nanmax(values)
    if not high > low:  # a constant map carries no ranking: show it as uniformly cold
        return np.zeros_like(values)
    return (values - low) / (high - low)


def colorize(values: np.ndarray, color_map: str = "jet") -> np.ndarray:
    """Map values in [0, 1] to RGBA bytes with a matplotlib colormap; shape (..., 4), uint8."""
    try:
        cmap = colormaps[color_map]
    except KeyError as error:
        raise OnnxplainError(f"unknown matplotlib colormap {color_map!r}, e.g. jet, viridis, Reds") from error
    return cmap(values, bytes=True)


def heatmap(saliency: np.ndarray, *, color_map: str = "jet") -> Image.Image:
    """The saliency map in colour, scaled from its minimum to its maximum."""
    return Image.fromarray(colorize(normalize(saliency), color_map)[..., :3])


def overlay(image: np.ndarray, saliency: np.ndarray, *, color_map: str = "jet", alpha: float = 0.5) -> Image.Image:
    """The heatmap blended over the image.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        The image, in [0, 1].
    saliency : ndarray, shape (H, W)
        The map.
    color_map : str
        Matplotlib colormap name.
    alpha : float
        Weight of the heatmap, in [0, 1].
    """
    return _blend(image, colorize(normalize(saliency), color_map)[..., :3], alpha)


def picture(image: np.ndarray) -> Image.Image:
    """The image itself, in [0, 1], as an RGB picture."""
    return Image.fromarray(_rgb_bytes(image))


def mask_overlay(image: np.ndarray, mask: np.ndarray, *, color: tuple[int, int, int] = (0, 200, 0),
                 alpha: float = 0.5) -> Image.Image:
    """The image with the pixels of `mask` tinted in `color`."""
    return _blend(image, np.asarray(color, np.float32), alpha, where=mask)


def isolines(
    image: np.ndarray, saliency: np.ndarray, *, levels: int = 8, color_map: str = "jet", min_size: int = 480
) -> Image.Image:
    """Contour lines of the saliency map over the grayscale image, coloured by level.

    Lines crowd where saliency changes fast; each line joins pixels of one saliency level, evenly
    spaced between the map's minimum and maximum.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        The image, in [0, 1].
    saliency : ndarray, shape (H, W)
        The map.
    levels : int
        Number of contour levels.
    color_map : str
        Matplotlib colormap name.
    min_size : int
        The picture is scaled up so that its shorter side has at least this many pixels.
    """
    height, width = saliency.shape
    zoom = max(1.0, min_size / min(height, width))
    figure = Figure(figsize=(width * zoom / 100, height * zoom / 100), dpi=100)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(_rgb_bytes(image).mean(axis=2), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    normalized = normalize(saliency)
    if normalized.max() > 0:
        steps = np.linspace(0, 1, levels + 2)[1:-1]
        axes.contour(normalized, levels=steps, cmap=color_map, linewidths=1.2 * zoom / 2)
    axes.set_axis_off()
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())


def grid(pictures: list[Image.Image], titles: list[str] | None = None, *, columns: int = 4) -> Image.Image:
    """Lay pictures out in a grid with optional titles, as one picture."""
    if not pictures:
        raise OnnxplainError("a grid needs at least one picture")
    rows = -(-len(pictures) // columns)
    columns = min(columns, len(pictures))
    width = max(p.width for p in pictures)
    height = max(p.height for p in pictures)
    figure = Figure(figsize=(columns * width / 100, rows * (height + 24) / 100), dpi=100)
    for i, picture in enumerate(pictures):
        axes = figure.add_subplot(rows, columns, i + 1)
        axes.imshow(np.asarray(picture.convert("RGB")))
        axes.set_axis_off()
        if titles:
            axes.set_title(titles[i], fontsize=9)
    figure.tight_layout(pad=1.0)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())


def _blend(image: np.ndarray, color: np.ndarray, alpha: float, where: np.ndarray | None = None) -> Image.Image:
    """``(1 - alpha) * image + alpha * color`` as an RGB picture, only at `where` if given."""
    base = _rgb_bytes(image).astype(np.float32)
    mixed = (1 - alpha) * base + alpha * np.asarray(color, np.float32)
    if where is not None:
        mixed = np.where(where[..., None], mixed, base)
    return Image.fromarray(np.round(mixed).astype(np.uint8))


def _rgb_bytes(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.round(np.clip(image[:, :, :3], 0, 1) * 255).astype(np.uint8)
