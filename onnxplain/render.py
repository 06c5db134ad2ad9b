"""Pictures of saliency maps: the summary, the map alone and over the image, isolines, HDM's circles.

Every picture is an RGB `PIL.Image.Image` drawn from an `Attribution`'s saved data alone, so a
reloaded attribution draws the same pictures, byte for byte. Matplotlib draws on an explicit
`Figure` with the Agg canvas: no window opens and no pyplot state is shared, so threads may draw.

What must sit on exact pixels (the image, the map, the outlines) is painted as arrays, each image
pixel a `zoom` × `zoom` block; matplotlib adds what holds text: titles, colour bars, legends and
the labels of isolines. Signed maps (LIME, KernelSHAP, Shapley, occlusion, RISE can be negative)
use a diverging colour map centred on zero; non-negative maps a sequential one from zero: in
both, 0 means "no effect".
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patheffects import AbstractPathEffect, withStroke
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw
from skimage import measure
from skimage.draw import disk
from skimage.morphology import dilation
from skimage.segmentation import find_boundaries
from skimage.transform import resize

from onnxplain.captions import CIRCLE_KINDS, blank_reason, header, map_label, method_title, score_words
from onnxplain.errors import OnnxplainError

if TYPE_CHECKING:
    from onnxplain.attribution import Attribution

SIGNED_MAP = "bwr"
"""Colour map of maps with negative values: blue below zero, white at zero, red above; saturated at
both ends, so that strong values stand out over dark images too (RdBu_r's ends are nearly black)."""
SATURATED_PERCENT = 0.5  # the strongest pixels a colour scale may saturate at, in percent
OUTLIER_FACTOR = 3.0  # ...when the largest value is this many times their edge
SEGMENT_COLOR = (0, 255, 0)
TARGET_COLOR = (255, 0, 255)
"""Outline colours: saturated green and magenta, absent from jet's, RdBu's and Reds' bright ends."""

_DPI = 100
_FONT = 13  # pixels; legible at every picture size, since images are zoomed to at least 480 px
_PAD, _TITLE, _LEGEND, _BAR = 12, 30, 34, 118  # layout in pixels: margins, a title, the legend, a colour bar
_MARKED = 20  # target components of fewer pixels are marked with a ring: a bare outline would hide them


def pictures(attribution: Attribution, *, color_map: str = "jet", signed_map: str = SIGNED_MAP
             ) -> dict[str, Image.Image]:
    """Every picture of an attribution, by file name (without ``.png``).

    ``summary`` (the one to open first), ``heatmap``, ``overlay`` and ``isolines`` always;
    ``circles_raw``, ``circles_better`` and ``circles_worse`` when the attribution holds circles
    (HDM); ``rise_max`` when it holds RISE's per-pixel maximum. Maps of volumes (three spatial
    axes) get those of `onnxplain.render_volume.pictures`; maps of other shapes get none.

    Parameters
    ----------
    attribution : Attribution
        What to draw.
    color_map : str
        Matplotlib colour map of non-negative maps.
    signed_map : str
        Diverging colour map of maps with negative values, centred on zero.
    """
    if attribution.map.ndim == 3:
        from onnxplain.render_volume import pictures as volume_pictures  # it imports this module: imported here

        return volume_pictures(attribution, color_map=color_map, signed_map=signed_map)
    if attribution.map.ndim != 2:
        return {}
    scene = _Scene.of(attribution, color_map=color_map, signed_map=signed_map)
    lines = _isolines_array(attribution.image, attribution.map, scene.scale, k=scene.k, record=attribution.record)
    made = {
        "summary": _summary(scene, lines),
        "heatmap": _layout([_Panel(scene.outlined(_colors(attribution.map, scene.scale)), f"{scene.title} map",
                                   scene.scale, scene.label, scene.legend(), scene.note)]),
        "overlay": _layout([scene.map_panel()]),
        # At the image's own size, to lay over the image in any viewer; the summary shows them zoomed.
        "isolines": Image.fromarray(_isolines_array(attribution.image, attribution.map, scene.scale, k=1,
                                                    record=attribution.record)),
    }
    if "circles" in attribution.arrays:
        for kind in CIRCLE_KINDS:
            made[f"circles_{kind}"] = _circles_picture(scene, kind)
    if "rise_max" in attribution.arrays:
        rise_max = attribution.arrays["rise_max"]
        scale = map_scale(rise_max, color_map=color_map, signed_map=signed_map)
        # Each target pixel's own map, of its class probability whatever the score; their maximum.
        made["rise_max"] = _layout([scene.map_panel(rise_max, scale, "largest increase of one target pixel's class "
                                                    "probability when kept", title=f"{scene.title} per-pixel maximum")])
    return made


def summary(attribution: Attribution, *, color_map: str = "jet", signed_map: str = SIGNED_MAP) -> Image.Image:
    """One row: the image | the model's segment and the target | the map over the image | isolines.

    The picture to open first: titled panels, the map's colour bar with its units, a legend of the
    outlines and a header naming the method, score and target. See `pictures` for the parameters.
    """
    if attribution.map.ndim != 2:
        raise OnnxplainError(f"a summary draws 2-D maps; this one is shaped {attribution.map.shape}")
    scene = _Scene.of(attribution, color_map=color_map, signed_map=signed_map)
    return _summary(scene, _isolines_array(attribution.image, attribution.map, scene.scale, k=scene.k,
                                           record=attribution.record))


def map_scale(saliency: np.ndarray, *, color_map: str = "jet", signed_map: str = SIGNED_MAP) -> ScalarMappable:
    """The colours of a map: `signed_map` over ``±max|map|`` if any value is negative, else `color_map`
    from 0 to the maximum, so that 0 (no effect) is white, or the colour map's low end.

    When the largest magnitude is over `OUTLIER_FACTOR` times the one that only `SATURATED_PERCENT`
    of the pixels exceed (single hot pixels, as gradient maps have), the scale ends there instead
    and ``scale.saturated`` is true.

    Examples
    --------
    >>> scale = map_scale(np.array([-2.0, 1.0]))
    >>> scale.norm.vmin, scale.norm.vmax, scale.to_rgba(np.zeros(1), bytes=True)[0].tolist()
    (-2.0, 2.0, [255, 255, 255, 255])
    """
    values = np.asarray(saliency, dtype=np.float64)
    magnitude = np.abs(values)
    top = float(magnitude.max()) if values.size else 0.0
    top = top if top > 0 else 1.0  # an all-zero map has no scale; any will do, it is drawn blank
    # Gradient maps put a few pixels far above the rest; scaled to those, the map reads blank. Then
    # colours saturate at the strongest pixels' edge, and the colour bar says so with an arrow.
    robust = float(np.percentile(magnitude, 100 - SATURATED_PERCENT)) if values.size else 0.0
    saturated = robust > 0 and top > OUTLIER_FACTOR * robust
    top = robust if saturated else top
    if values.size and values.min() < 0:
        # An odd number of colours puts one exactly at zero: white in bwr, RdBu_r or coolwarm.
        scale = ScalarMappable(Normalize(-top, top), _colormap(signed_map).resampled(255))
    else:
        scale = ScalarMappable(Normalize(0.0, top), _colormap(color_map))
    scale.saturated = saturated  # type: ignore[attr-defined]
    return scale


def zoom(shape: tuple[int, ...], *, min_size: int = 480) -> int:
    """The integer factor each image pixel is drawn by: the smallest that makes the shorter side at
    least `min_size` pixels (1 for large images), at most what keeps the longer side within 4096.

    Integer, so that every image pixel stays a whole block and outlines fall on pixel edges.

    Examples
    --------
    >>> zoom((240, 240)), zoom((512, 640))
    (2, 1)
    """
    return max(1, min(math.ceil(min_size / min(shape[:2])), 4096 // max(shape[:2])))


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


def circle_map(values: np.ndarray, circles: np.ndarray, shape: tuple[int, int], *, color_map: str = "Reds",
               background: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
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
    background : tuple of int
        RGB colour where no circle is.
    """
    colors = colorize(normalize(values), color_map)[:, :3]
    picture = Image.new("RGB", (shape[1], shape[0]), background)
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
    return _colormap(color_map)(values, bytes=True)


def heatmap(saliency: np.ndarray, *, color_map: str = "jet", signed_map: str = SIGNED_MAP) -> Image.Image:
    """The map in colour at the image's size, on the scale of `map_scale` (no colour bar)."""
    return Image.fromarray(_colors(saliency, map_scale(saliency, color_map=color_map, signed_map=signed_map)))


def overlay(image: np.ndarray, saliency: np.ndarray, *, color_map: str = "jet", signed_map: str = SIGNED_MAP,
            alpha: float = 0.8, segment: np.ndarray | None = None, region: np.ndarray | None = None) -> Image.Image:
    """The map over the image at the image's size, opaque where it is strong, clear where it is zero.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        The image, in [0, 1].
    saliency : ndarray, shape (H, W)
        The map, coloured as `map_scale` says.
    color_map, signed_map : str
        Matplotlib colour maps of non-negative and of signed maps.
    alpha : float
        Opacity of the strongest value, in [0, 1]; a value ``v`` gets ``alpha * |v| / max|map|``,
        so pixels of no effect show the image itself.
    segment, region : ndarray of bool, optional
        The model's segment and the target's region, outlined in `SEGMENT_COLOR` and `TARGET_COLOR`.
    """
    scale = map_scale(saliency, color_map=color_map, signed_map=signed_map)
    return Image.fromarray(_outlined(_over_image(image, saliency, scale, alpha), segment, region, k=1))


def picture(image: np.ndarray) -> Image.Image:
    """The image itself, in [0, 1], as an RGB picture."""
    return Image.fromarray(_rgb_bytes(image))


def mask_overlay(image: np.ndarray, mask: np.ndarray, *, color: tuple[int, int, int] = (0, 200, 0),
                 alpha: float = 0.5) -> Image.Image:
    """The image with the pixels of `mask` tinted in `color`."""
    return Image.fromarray(_blend(_rgb_bytes(image), np.asarray(color, np.float32), alpha, where=mask))


def isolines(image: np.ndarray, saliency: np.ndarray, *, levels: int = 6, color_map: str = "jet",
             signed_map: str = SIGNED_MAP, min_size: int = 480) -> Image.Image:
    """Labelled contour lines of the map over the image (colour stays colour, grey stays grey).

    The picture is the image's size times `zoom` (2 for 240 px images, 1 from 480 px on): every
    image pixel is a whole block, so lines sit where they are in the image, and labels stay
    legible. Lines crowd where the map changes fast; negative levels are dashed. A map that is
    constant gets no lines but a sentence saying so.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        The image, in [0, 1].
    saliency : ndarray, shape (H, W)
        The map.
    levels : int
        About how many levels, at round values of the map's unit.
    color_map, signed_map : str
        Matplotlib colour maps of non-negative and of signed maps.
    min_size : int
        The shorter side is zoomed by an integer factor to at least this many pixels.
    """
    scale = map_scale(saliency, color_map=color_map, signed_map=signed_map)
    k = zoom(saliency.shape, min_size=min_size)
    return Image.fromarray(_isolines_array(image, saliency, scale, k=k, levels=levels))


def grid(pictures: list[Image.Image], titles: list[str] | None = None, *, columns: int = 4) -> Image.Image:
    """Lay pictures out in a grid with optional titles, as one picture."""
    if not pictures:
        raise OnnxplainError("a grid needs at least one picture")
    rows = -(-len(pictures) // columns)
    columns = min(columns, len(pictures))
    width = max(p.width for p in pictures)
    height = max(p.height for p in pictures)
    figure = Figure(figsize=(columns * width / 100, rows * (height + 24) / 100), dpi=100)
    for i, shown in enumerate(pictures):
        axes = figure.add_subplot(rows, columns, i + 1)
        axes.imshow(np.asarray(shown.convert("RGB")))
        axes.set_axis_off()
        if titles:
            axes.set_title(titles[i], fontsize=9)
    figure.tight_layout(pad=1.0)
    return Image.fromarray(_canvas(figure))


# --- what the pictures share -------------------------------------------------------------------


@dataclasses.dataclass
class _Panel:
    """One picture of a row, on exact pixels, with a title and optionally a colour bar, a legend, a note."""

    picture: np.ndarray
    title: str
    scale: ScalarMappable | None = None
    label: str = ""
    legend: list[Line2D] | None = None
    note: str | None = None


@dataclasses.dataclass
class _Scene:
    """What every picture of one attribution draws from."""

    attribution: Attribution
    scale: ScalarMappable
    k: int
    title: str
    label: str
    note: str | None
    segment: np.ndarray
    region: np.ndarray | None

    @classmethod
    def of(cls, attribution: Attribution, *, color_map: str, signed_map: str) -> _Scene:
        shape = attribution.map.shape
        region = None if attribution.region is None else _fit(attribution.region, shape)
        return cls(attribution, map_scale(attribution.map, color_map=color_map, signed_map=signed_map), zoom(shape),
                   method_title(attribution.record) or "relevance", map_label(attribution),
                   blank_reason(attribution.map, noun=score_words(attribution.record)[0], record=attribution.record),
                   _fit(attribution.segment, shape), region)

    def map_panel(self, saliency: np.ndarray | None = None, scale: ScalarMappable | None = None,
                  label: str | None = None, *, title: str | None = None) -> _Panel:
        """The map over the image with the outlines, the colour bar and the legend."""
        values = self.attribution.map if saliency is None else saliency
        shown = self.outlined(_over_image(self.attribution.image, values, scale or self.scale))
        note = self.note if saliency is None else blank_reason(values)
        return _Panel(shown, title or f"{self.title} map over the image", scale or self.scale, label or self.label,
                      self.legend(), note)

    def outlined(self, picture: np.ndarray) -> np.ndarray:
        """`picture`, of the image's size, zoomed and with the segment and the target outlined."""
        return _outlined(_zoomed(picture, self.k), self.segment, self.region, k=self.k)

    def legend(self) -> list[Line2D]:
        record = self.attribution.record
        given = record.get("reference", {}).get("source") == "segment"
        entries = [_line(SEGMENT_COLOR, "reference segment (given)" if given else "model's segment")]
        kind = record.get("target", {}).get("kind", "class" if self.region is None else "mask")
        if self.region is None:
            entries[0].set_label(f"{entries[0].get_label()} = target (whole class)")
        else:
            small = any(p.area < _MARKED for p in measure.regionprops(measure.label(self.region)))
            entries.append(_line(TARGET_COLOR, {"box": "target box", "pixels": "target pixels"}.get(kind, "target"),
                                 ring=small))
        return entries


def _summary(scene: _Scene, lines: np.ndarray) -> Image.Image:
    attribution, k = scene.attribution, scene.k
    image = _zoomed(_rgb_bytes(attribution.image), k)
    tinted = _blend(image, np.asarray(SEGMENT_COLOR, np.float32), 0.35, where=_zoomed(scene.segment, k))
    panels = [
        _Panel(image, "image"),
        _Panel(_outlined(tinted, scene.segment, scene.region, k=k), "model's segment and target",
               legend=scene.legend()),
        dataclasses.replace(scene.map_panel(), legend=None),  # the outlines' legend is under the second panel
        _Panel(lines, "isolines of the map"),
    ]
    return _layout(panels, header=header(attribution.record))


def _circles_picture(scene: _Scene, kind: str) -> Image.Image:
    attribution = scene.attribution
    noun, worse, better, unit = score_words(attribution.record)
    values = circle_values(attribution.values, attribution.baseline_value, kind)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    scale = ScalarMappable(Normalize(low, high if high > low else low + 1.0), _colormap("Reds"))
    red, green, blue = (int(c) for c in colorize(np.zeros(1), "Reds")[0, :3])  # no circle reads as the lowest value
    drawn = circle_map(values, attribution.arrays["circles"], attribution.map.shape, background=(red, green, blue))
    shown = scene.outlined(np.asarray(drawn))
    what = {"raw": f"{noun} with the circle hidden", "better": f"{better} of the {noun} with the circle hidden",
            "worse": f"{worse} of the {noun} with the circle hidden"}[kind]
    return _layout([_Panel(shown, f"{scene.title} circles: {kind}", scale, what + unit, scene.legend(),
                           blank_reason(values, kind=kind, noun=noun))])


def _isolines_array(image: np.ndarray, saliency: np.ndarray, scale: ScalarMappable, *, k: int,
                    levels: int = 6, record: dict | None = None) -> np.ndarray:
    height, width = saliency.shape
    figure = Figure(figsize=(width * k / _DPI, height * k / _DPI), dpi=_DPI)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(_zoomed(_rgb_bytes(image), k), extent=(-0.5, width - 0.5, height - 0.5, -0.5),
                interpolation="nearest")
    note = blank_reason(saliency, record=record)
    low, high = float(saliency.min()), float(saliency.max())
    # Round levels of the map's unit, strictly inside its range; the zero level is where nothing happens.
    steps = [v for v in MaxNLocator(nbins=levels).tick_values(low, high) if low < v < high and v != 0]
    if note is None and steps:
        halo: list[AbstractPathEffect] = [withStroke(linewidth=_points(4), foreground="black")]
        contours = axes.contour(saliency, levels=steps, colors=list(scale.to_rgba(np.asarray(steps))),
                                linewidths=_points(2), linestyles=["dashed" if v < 0 else "solid" for v in steps])
        contours.set(path_effects=halo)
        for text in axes.clabel(contours, fmt="{:.3g}".format, fontsize=_points(_FONT - 1), colors="white"):
            text.set_path_effects(halo)
    if note:
        _note(axes, note, width * k)
    axes.set_axis_off()
    return _canvas(figure)


def _layout(panels: list[_Panel], *, header: str | None = None) -> Image.Image:
    """Panels in one row, each picture placed on exact pixels, titled, with its colour bar to the right."""
    height = max(p.picture.shape[0] for p in panels)
    widths = [p.picture.shape[1] + (_BAR if p.scale else 0) for p in panels]
    bottom = _PAD + (_LEGEND if any(p.legend for p in panels) else 0)
    top = _PAD + _TITLE + (_TITLE if header else 0)
    size = (_PAD + sum(w + _PAD for w in widths), top + height + bottom)
    figure = Figure(figsize=(size[0] / _DPI, size[1] / _DPI), dpi=_DPI)
    figure.patch.set_facecolor("white")

    def box(x: float, y: float, w: float = 0.0, h: float = 0.0) -> tuple[float, float, float, float]:
        return x / size[0], y / size[1], w / size[0], h / size[1]

    x = _PAD
    for panel, width in zip(panels, widths, strict=True):
        h, w = panel.picture.shape[:2]
        y = bottom + height - h  # from the figure's bottom; pictures align at the top
        figure.figimage(panel.picture, xo=x, yo=y, origin="upper")
        figure.text(*box(x + w / 2, y + h + 6)[:2], panel.title, ha="center", va="bottom", fontsize=_points(_FONT + 2))
        if panel.scale is not None:
            _colorbar(figure, panel.scale, panel.label, box(x + w + 10, y, 16, h), h)
        if panel.legend:
            figure.legend(handles=panel.legend, loc="upper center", bbox_to_anchor=box(x + w / 2, y - 2)[:2],
                          ncol=len(panel.legend), frameon=False, fontsize=_points(_FONT), handlelength=1.6)
        if panel.note:
            axes = figure.add_axes(box(x, y, w, h), zorder=5)  # above the picture, which figimage draws last
            axes.set_axis_off()
            _note(axes, panel.note, w)
        x += width + _PAD
    if header:
        figure.text(*box(_PAD, size[1] - _PAD)[:2], header, ha="left", va="top", fontsize=_points(_FONT + 2),
                    fontweight="bold")
    return Image.fromarray(_canvas(figure))


def _colorbar(figure: Figure, scale: ScalarMappable, label: str, rect: tuple[float, float, float, float],
              height: int, *, units: str = "pixels") -> None:
    """The colour bar of `scale` in `rect` (fractions of `figure`), `height` pixels tall, with its label; a
    saturated scale gets arrows, and the label says what they mean."""
    saturated = getattr(scale, "saturated", False)
    extend = ("both" if float(scale.get_clim()[0] or 0) < 0 else "max") if saturated else "neither"
    bar = figure.colorbar(scale, cax=figure.add_axes(rect), extend=extend)
    bar.ax.tick_params(labelsize=_points(_FONT - 1))
    label += f"; arrows: top {SATURATED_PERCENT:g} % of {units}, off scale" if saturated else ""
    bar.set_label(textwrap.fill(label, max(20, height // 8)), fontsize=_points(_FONT))


def _note(axes: Any, text: str, width: int) -> None:
    """Write why a picture is blank across the middle of `axes`, `width` pixels wide."""
    axes.text(0.5, 0.5, textwrap.fill(text, max(16, width // 9)), transform=axes.transAxes, ha="center",
              va="center", fontsize=_points(_FONT + 1), bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.9})


def _outlined(picture: np.ndarray, segment: np.ndarray | None, region: np.ndarray | None, *, k: int) -> np.ndarray:
    """`picture` (k·H, k·W, 3) with the segment and the region outlined, each line with a black halo
    so that it shows on dark and light images alike; target components too small to outline are
    marked with a ring."""
    picture = picture.copy()
    if segment is not None:
        _paint(picture, find_boundaries(_zoomed(segment, k), mode="thick"), SEGMENT_COLOR)
    if region is None:
        return picture
    labelled = measure.label(region)
    large = np.isin(labelled, [p.label for p in measure.regionprops(labelled) if p.area >= _MARKED])
    _paint(picture, find_boundaries(_zoomed(large, k), mode="thick"), TARGET_COLOR)
    ring = np.zeros(picture.shape[:2], bool)
    radius = max(8, 5 * k)
    for part in measure.regionprops(labelled):
        if part.area < _MARKED:
            centre = (np.asarray(part.centroid) + 0.5) * k - 0.5
            ring[disk(centre, radius + 1, shape=ring.shape)] = True
            ring[disk(centre, radius - 1, shape=ring.shape)] = False
            ring[_zoomed(labelled == part.label, k)] = True  # the pixels themselves, as they are
    _paint(picture, ring, TARGET_COLOR)
    return picture


def _paint(picture: np.ndarray, line: np.ndarray, color: tuple[int, int, int]) -> None:
    picture[dilation(line, np.ones((3, 3), bool)) & ~line] = 0
    picture[line] = color


def _over_image(image: np.ndarray, saliency: np.ndarray, scale: ScalarMappable, alpha: float = 0.8) -> np.ndarray:
    top = float(np.abs(np.array([scale.norm.vmin, scale.norm.vmax], dtype=np.float64)).max())
    strength = np.abs(saliency) / top
    return _blend(_rgb_bytes(image), _colors(saliency, scale).astype(np.float32), alpha * np.clip(strength, 0, 1))


def _colors(saliency: np.ndarray, scale: ScalarMappable) -> np.ndarray:
    return np.asarray(scale.to_rgba(saliency, bytes=True))[..., :3]


def _blend(base: np.ndarray, color: np.ndarray, alpha: float | np.ndarray, where: np.ndarray | None = None
           ) -> np.ndarray:
    """``(1 - alpha) * base + alpha * color`` in bytes, only at `where` if given; `alpha` may be per pixel."""
    alpha = np.asarray(alpha, np.float32)
    alpha = alpha[..., None] if alpha.ndim == 2 else alpha
    mixed = (1 - alpha) * base.astype(np.float32) + alpha * np.asarray(color, np.float32)
    if where is not None:
        mixed = np.where(where[..., None], mixed, base)
    return np.round(mixed).astype(np.uint8)


def _zoomed(array: np.ndarray, k: int) -> np.ndarray:
    return array if k == 1 else np.repeat(np.repeat(array, k, axis=0), k, axis=1)


def _fit(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A boolean mask of the output's shape at the image's `shape` (nearest pixel), for drawing."""
    mask = np.asarray(mask, dtype=bool)
    return mask if mask.shape == tuple(shape) else resize(mask, shape, order=0, anti_aliasing=False).astype(bool)


def _line(color: tuple[int, int, int], text: str, *, ring: bool = False) -> Line2D:
    rgb = "#{:02x}{:02x}{:02x}".format(*color)
    if ring:
        return Line2D([], [], linestyle="none", marker="o", markersize=_points(14), markerfacecolor="none",
                      markeredgecolor=rgb, markeredgewidth=_points(2), label=text)
    return Line2D([], [], color=rgb, linewidth=_points(4), label=text,
                  path_effects=[withStroke(linewidth=_points(6), foreground="black")])


def _colormap(name: str) -> Colormap:
    try:
        return colormaps[name]
    except KeyError as error:
        raise OnnxplainError(f"unknown matplotlib colormap {name!r}, e.g. jet, viridis, Reds, RdBu_r") from error


def _points(pixels: float) -> float:
    """A size in pixels as matplotlib's points at `_DPI`."""
    return pixels * 72 / _DPI


def _canvas(figure: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _rgb_bytes(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.round(np.clip(image[:, :, :3], 0, 1) * 255).astype(np.uint8)
