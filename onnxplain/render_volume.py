"""Pictures of 3-D attributions: orthogonal slices through the map's peak, a mosaic of axial slices, a summary.

The arrays stay in the file's own axis order (i, j, k, as `onnxplain.volumes` reads them); only the
pictures are turned upright. The voxel-to-world affine saved in ``record["volume"]`` says which array
axis runs left-right, posterior-anterior and inferior-superior (`nibabel.orientations.io_orientation`),
so that an oblique or permuted volume is drawn like any other. Without one, axes i, j, k are taken
as L→R, P→A, I→S (an identity affine), and the pictures say so.

Convention (neurological, as nilearn draws): the world axes R, A and S grow towards the screen's right
and top. Axial slices are seen from above, anterior up; coronal slices from behind, superior up; in
both the patient's right is on the screen's right ("left is left"). Sagittal slices are seen from the
patient's right, superior up and anterior on the right. Letters at the slices' edges (L, R, A, P, S,
I) say so on every picture.

As in `onnxplain.render`, what must sit on exact pixels is painted as arrays: every voxel is a
whole block of pixels, its sides in proportion to the voxel's spacing, so that anisotropic voxels
do not squash the anatomy; colours, scales, outlines and captions are those of the 2-D pictures.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patheffects import withStroke
from nibabel.affines import voxel_sizes
from nibabel.orientations import io_orientation
from PIL import Image

from onnxplain import render
from onnxplain.captions import header
from onnxplain.errors import OnnxplainError

if TYPE_CHECKING:
    from onnxplain.attribution import Attribution

MOSAIC_SLICES = 15  # axial slices of the mosaic, at most
_PLANES = {"axial": (2, 0, 1), "coronal": (1, 0, 2), "sagittal": (0, 1, 2)}
"""Each plane's world axes (0: R, 1: A, 2: S): the one it is perpendicular to, the one drawn towards the
screen's right, the one drawn up."""
_LETTERS = {"axial": "LRAP", "coronal": "LRSI", "sagittal": "PASI"}  # the screen's left, right, top and bottom
_SIZES = {"slices": 320, "summary": 240, "mosaic": 176}  # pixels of a volume's longest side in mm, about
_MIN_WIDTH = 760  # pixels: a header line and the legend fit
_BAR = render._BAR + 18  # pixels: bars shorter than the 2-D pictures' wrap their labels on a third line
_AXES = "ijk"


@dataclasses.dataclass(frozen=True)
class Plane:
    """How an anatomical plane cuts the volume's array and lies on the screen.

    Attributes
    ----------
    name : {'axial', 'coronal', 'sagittal'}
    normal : int
        The array axis the plane is perpendicular to.
    across, up : int
        The array axes drawn towards the screen's right and top.
    across_sign, up_sign : {1, -1}
        1 where that array axis grows towards the right or the top of the screen, -1 where it runs back.
    """

    name: str
    normal: int
    across: int
    up: int
    across_sign: int
    up_sign: int

    def cut(self, volume: np.ndarray, index: int) -> np.ndarray:
        """Slice `index` of `volume` (shape (I, J, K, ...)), upright: rows from the screen's top."""
        section = np.moveaxis(volume, (self.up, self.across, self.normal), (0, 1, 2))[:, :, index]
        return section[::-self.up_sign, ::self.across_sign]

    def place(self, voxel: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, int]:
        """Row and column of `voxel` in a slice `cut` from a volume of `shape`."""
        row, column = voxel[self.up], voxel[self.across]
        return (shape[self.up] - 1 - row if self.up_sign > 0 else row,
                column if self.across_sign > 0 else shape[self.across] - 1 - column)


def planes(affine: np.ndarray | None = None) -> dict[str, Plane]:
    """The axial, coronal and sagittal planes of a volume whose voxel-to-world matrix is `affine`.

    Examples
    --------
    >>> planes()["axial"]  # identity: k runs inferior to superior
    Plane(name='axial', normal=2, across=0, up=1, across_sign=1, up_sign=1)
    >>> planes(np.array([[0, 0, -3, 0], [0.8, 0, 0, 0], [0, 1.2, 0, 0], [0, 0, 0, 1]]))["axial"].normal
    1
    """
    orientation = io_orientation(np.eye(4) if affine is None else np.asarray(affine, np.float64))
    if np.isnan(orientation).any():  # a degenerate affine (a zero column) orients nothing: keep the array's axes
        orientation = io_orientation(np.eye(4))
    array_axis = {int(world): (axis, int(sign)) for axis, (world, sign) in enumerate(orientation)}
    return {name: Plane(name, array_axis[normal][0], array_axis[across][0], array_axis[up][0],
                        array_axis[across][1], array_axis[up][1])
            for name, (normal, across, up) in _PLANES.items()}


def peak(saliency: np.ndarray, segment: np.ndarray | None = None) -> tuple[int, int, int]:
    """The voxel of the largest ``|map|`` (the first, in array order, of equals).

    A constant map has no peak: then the voxel of `segment` nearest its centre, or the volume's centre.

    Examples
    --------
    >>> peak(np.array([[[0.0, -2.0], [1.0, 0.0]]]))  # signed: the largest magnitude
    (0, 0, 1)
    """
    if saliency.max() > saliency.min():
        i, j, k = (int(v) for v in np.unravel_index(np.argmax(np.abs(saliency)), saliency.shape))
        return i, j, k
    # Nothing stands out: show the segment's middle rather than the volume's first corner.
    return _middle(segment if segment is not None and segment.any() else np.ones(saliency.shape, bool))


def orthogonal_slices(attribution: Attribution) -> dict[str, tuple[int, int]]:
    """The array axis and the index of the axial, coronal and sagittal slices through the map's `peak`.

    Examples
    --------
    >>> from onnxplain.attribution import Attribution
    >>> saliency = np.zeros((8, 8, 8), np.float32)
    >>> saliency[2, 5, 3] = 1.0
    >>> orthogonal_slices(Attribution(saliency, np.zeros((8, 8, 8, 1)), saliency > 0))  # no affine: k is S-I
    {'axial': (2, 3), 'coronal': (1, 5), 'sagittal': (0, 2)}
    """
    voxel = peak(attribution.map, render._fit(attribution.segment, attribution.map.shape))
    return {name: (plane.normal, voxel[plane.normal]) for name, plane in _geometry(attribution.record)[0].items()}


def mosaic_slices(attribution: Attribution, *, count: int = MOSAIC_SLICES) -> list[int]:
    """Up to `count` axial slice indices, evenly spread over the axial extent of the segment, the region
    and the strongest 1 % of the map's voxels, or over the whole volume when those are empty."""
    axis = _geometry(attribution.record)[0]["axial"].normal
    strength = np.abs(attribution.map)
    shown = (strength >= np.percentile(strength, 99)) & (strength > 0)
    shown |= render._fit(attribution.segment, strength.shape)
    if attribution.region is not None:
        shown |= render._fit(attribution.region, strength.shape)
    along = np.flatnonzero(shown.any(axis=tuple(a for a in range(3) if a != axis)))
    low, high = (int(along[0]), int(along[-1])) if along.size else (0, strength.shape[axis] - 1)
    return sorted({int(i) for i in np.round(np.linspace(low, high, min(count, high - low + 1)))})


def pictures(attribution: Attribution, *, color_map: str = "jet", signed_map: str = render.SIGNED_MAP
             ) -> dict[str, Image.Image]:
    """Every picture of a 3-D attribution, by file name (without ``.png``).

    ``summary`` (the one to open first: the header, the image's orthogonal slices through the middle
    of the segment and the target, the map's through its peak), ``slices`` (axial, coronal and
    sagittal slices through the map's peak, marked with a cross) and ``mosaic`` (axial slices spread
    over where the segment, the target and the map are). Colours, outlines, legend and captions are
    those of `onnxplain.render.pictures`.

    Parameters
    ----------
    attribution : Attribution
        What to draw: its map shaped (I, J, K), its image (I, J, K, C), of which the first channel is
        drawn in grey, between its 0.5th and 99.5th percentiles.
    color_map : str
        Matplotlib colour map of non-negative maps.
    signed_map : str
        Diverging colour map of maps with negative values, centred on zero.
    """
    if attribution.map.ndim != 3:
        raise OnnxplainError(f"volume pictures draw 3-D maps; this one is shaped {attribution.map.shape}")
    view = _View.of(attribution, color_map=color_map, signed_map=signed_map)
    return {"summary": _summary(view), "slices": _slices(view), "mosaic": _mosaic(view)}


# --- drawing ----------------------------------------------------------------------------------


@dataclasses.dataclass
class _Tile:
    """One slice on exact pixels, its title and, optionally, the letters of its edges (left, right, top, bottom)."""

    picture: np.ndarray
    title: str
    letters: str = ""


@dataclasses.dataclass
class _View:
    """What every picture of one volume attribution draws from."""

    scene: render._Scene
    grey: np.ndarray  # the image's first channel, windowed to [0, 1]
    planes: dict[str, Plane]
    spacing: np.ndarray
    peak: tuple[int, int, int]
    middle: tuple[int, int, int]  # the voxel of the segment and the target nearest their centre
    assumed: bool  # no affine saved: the array's axes are taken as R, A, S

    @classmethod
    def of(cls, attribution: Attribution, *, color_map: str, signed_map: str) -> _View:
        scene = render._Scene.of(attribution, color_map=color_map, signed_map=signed_map)
        image = np.asarray(attribution.image, np.float64)
        grey = image if image.ndim == 3 else image[..., 0]
        # Volumes come z-scored, in Hounsfield units or in [0, 1]: a window of their own percentiles
        # shows each, and a few bright voxels do not turn the rest black.
        low, high = np.percentile(grey, (0.5, 99.5))
        grey = np.clip((grey - low) / (high - low if high > low else 1.0), 0, 1).astype(np.float32)
        found, spacing, assumed = _geometry(attribution.record)
        voxel = peak(attribution.map, scene.segment)
        shown = scene.segment if scene.region is None else scene.segment | scene.region
        return cls(scene, grey, found, spacing, voxel, _middle(shown) if shown.any() else voxel, assumed)

    def factors(self, size: int, axes: tuple[int, ...] = (0, 1, 2)) -> tuple[int, ...]:
        """Pixels per voxel along each array axis: in proportion to the spacing, the volume's longest side
        along `axes` about `size` pixels."""
        ratio = self.spacing / self.spacing.min()
        base = max(1, round(size / float(np.max((np.array(self.grey.shape) * ratio)[list(axes)]))))
        return tuple(max(1, round(base * r)) for r in ratio)

    def tile(self, plane: Plane, index: int, factors: tuple[int, ...], *, over: bool = True) -> np.ndarray:
        """Slice `index` in `plane`: the map over the image (`over`), with a cross on the peak if it is
        in this slice, or the image with the segment tinted; both with the outlines."""
        scene = self.scene
        rows, columns = factors[plane.up], factors[plane.across]

        def blocks(section: np.ndarray) -> np.ndarray:  # each voxel a rows x columns block of pixels
            return np.repeat(np.repeat(section, rows, axis=0), columns, axis=1)

        grey, segment = plane.cut(self.grey, index), plane.cut(scene.segment, index)
        if over:
            picture = render._over_image(grey, plane.cut(scene.attribution.map, index), scene.scale)
        else:
            picture = render._blend(render._rgb_bytes(grey), np.asarray(render.SEGMENT_COLOR, np.float32), 0.35,
                                    where=segment)
        region = None if scene.region is None else blocks(plane.cut(scene.region, index))
        picture = render._outlined(blocks(picture), blocks(segment), region, k=1)
        if over and self.scene.note is None and self.peak[plane.normal] == index:  # a blank map has no peak
            row, column = plane.place(self.peak, self.grey.shape)
            _cross(picture, (int((row + 0.5) * rows), int((column + 0.5) * columns)), max(rows, columns) // 2 + 3)
        return picture


def _orthogonal(view: _View, voxel: tuple[int, int, int], factors: tuple[int, ...], *, what: str = "",
                over: bool = True) -> list[_Tile]:
    """The axial, coronal and sagittal tiles through `voxel`, titled "`what`, axial k=23"."""
    return [_Tile(view.tile(plane, voxel[plane.normal], factors, over=over),
                  f"{what}{plane.name} {_AXES[plane.normal]}={voxel[plane.normal]}", _LETTERS[plane.name])
            for plane in view.planes.values()]


def _slices(view: _View) -> Image.Image:
    where = ("its peak at " if view.scene.note is None else "") + f"voxel (i, j, k) = {view.peak}"
    return _grid([_orthogonal(view, view.peak, view.factors(_SIZES["slices"]))], view,
                 header=f"{view.scene.title} map over the image, through {where}", bar_rows=1, marked=True)


def _mosaic(view: _View) -> Image.Image:
    plane = view.planes["axial"]
    factors = view.factors(_SIZES["mosaic"], (plane.across, plane.up))  # only the axial extent is drawn
    indices = mosaic_slices(view.scene.attribution)
    axis = _AXES[plane.normal]
    tiles = [_Tile(view.tile(plane, i, factors), f"{axis}={i}", _LETTERS["axial"] if n == 0 else "")
             for n, i in enumerate(indices)]
    # About as many columns as make the mosaic a landscape page (3 : 2), from 2 to 5: flat slices stack higher.
    height, width = tiles[0].picture.shape[:2]
    columns = min(5, max(2, round(math.sqrt(1.5 * len(tiles) * height / width))))
    rows = [tiles[n:n + columns] for n in range(0, len(tiles), columns)]
    title = f"{view.scene.title} map over the image: axial slices {axis}={indices[0]} to {indices[-1]}"
    return _grid(rows, view, header=title, bar_rows=len(rows), marked=view.peak[plane.normal] in indices)


def _summary(view: _View) -> Image.Image:
    factors = view.factors(_SIZES["summary"])
    # The segment may lie away from the map's peak: each row goes through what it shows.
    rows = [_orthogonal(view, view.middle, factors, what="segment, ", over=False),
            _orthogonal(view, view.peak, factors, what="map, ")]
    return _grid(rows, view, header=header(view.scene.attribution.record), bar_rows=1, marked=True)


def _grid(rows: list[list[_Tile]], view: _View, *, header: str, bar_rows: int, marked: bool = False) -> Image.Image:
    """Rows of titled tiles on exact pixels under `header`; the colour bar right of the last `bar_rows`
    rows, the legend of the outlines (and of the peak's cross when `marked`) below."""
    pad, title = render._PAD, render._TITLE
    header += "\nno affine saved: axes i, j, k taken as L→R, P→A, I→S" if view.assumed else ""
    heights = [max(t.picture.shape[0] for t in row) for row in rows]
    # Each column as wide as its widest picture or title (about 8.5 pixels a letter), so titles never overlap.
    slots = [max(max(row[c].picture.shape[1], round(8.5 * len(row[c].title))) for row in rows if c < len(row))
             for c in range(max(len(row) for row in rows))]
    width = sum(slot + pad for slot in slots)
    # Thin volumes draw narrow tiles: the figure keeps room for the header and the legend, the tiles centred.
    full = max(pad + width + _BAR, _MIN_WIDTH)
    left = (full - width - _BAR) // 2
    header = "\n".join(textwrap.fill(line, (full - 2 * pad) // 9) for line in header.split("\n"))
    top = pad + title * (header.count("\n") + 1)  # where the first row's titles start, from the figure's top
    size = (full, top + sum(h + title for h in heights) + render._LEGEND + pad)
    figure = Figure(figsize=(size[0] / render._DPI, size[1] / render._DPI), dpi=render._DPI)
    figure.patch.set_facecolor("white")

    def box(x: float, y: float, w: float = 0.0, h: float = 0.0) -> tuple[float, float, float, float]:
        """`x`, `y` from the figure's top left, `w`, `h` in pixels, as fractions of the figure from its bottom left."""
        return x / size[0], 1 - (y + h) / size[1], w / size[0], h / size[1]

    figure.text(*box(pad, pad)[:2], header, ha="left", va="top", fontsize=render._points(render._FONT + 2),
                fontweight="bold")
    halo = [withStroke(linewidth=render._points(3), foreground="black")]
    for row, height in zip(rows, heights, strict=True):
        top += title
        x = left + pad
        for tile, slot in zip(row, slots, strict=False):
            h, w = tile.picture.shape[:2]
            x += (slot - w) // 2  # the picture in the middle of its column
            figure.figimage(tile.picture, xo=x, yo=size[1] - top - h, origin="upper")
            figure.text(*box(x + w / 2, top - 6)[:2], tile.title, ha="center", va="bottom",
                        fontsize=render._points(render._FONT + 1))
            spots = ((x + 4, top + h / 2, "left", "center"), (x + w - 4, top + h / 2, "right", "center"),
                     (x + w / 2, top + 3, "center", "top"), (x + w / 2, top + h - 3, "center", "bottom"))
            for letter, (lx, ly, ha, va) in zip(tile.letters, spots, strict=False):
                figure.text(*box(lx, ly)[:2], letter, ha=ha, va=va, color="white", path_effects=halo,
                            fontsize=render._points(render._FONT), fontweight="bold")
            x += w + (slot - w + 1) // 2 + pad
        top += height
    mapped = sum(heights[-bar_rows:]) + title * (bar_rows - 1)  # the height of the rows the map is drawn in
    render._colorbar(figure, view.scene.scale, view.scene.label, box(left + width + 10, top - mapped, 16, mapped),
                     mapped, units="voxels")
    if view.scene.note:
        axes = figure.add_axes(box(left + pad, top - mapped, width - pad, mapped), zorder=5)
        axes.set_axis_off()
        render._note(axes, view.scene.note, width)
    legend = view.scene.legend()
    if marked and view.scene.note is None:
        legend.append(Line2D([], [], linestyle="none", marker="P", markersize=render._points(16),
                             markerfacecolor="white", markeredgecolor="black", label="peak of |map|"))
    figure.legend(handles=legend, loc="upper center", bbox_to_anchor=box(left + (pad + width) / 2, top + 2)[:2],
                  ncol=len(legend), frameon=False, fontsize=render._points(render._FONT), handlelength=1.6)
    return Image.fromarray(render._canvas(figure))


def _cross(picture: np.ndarray, centre: tuple[int, int], gap: int) -> None:
    """Paint a cross, open at its centre to leave the voxel visible, at `centre` of `picture`."""
    line = np.zeros(picture.shape[:2], bool)
    row, column, arm = centre[0], centre[1], gap + 10
    line[max(row - arm, 0):max(row - gap, 0), max(column - 1, 0):column + 1] = True
    line[row + gap:row + arm, max(column - 1, 0):column + 1] = True
    line[max(row - 1, 0):row + 1, max(column - arm, 0):max(column - gap, 0)] = True
    line[max(row - 1, 0):row + 1, column + gap:column + arm] = True
    render._paint(picture, line, (255, 255, 255))


def _middle(mask: np.ndarray) -> tuple[int, int, int]:
    """The voxel of `mask` nearest its centre of mass: inside it, even for a ring or a cross."""
    inside = np.argwhere(mask)
    i, j, k = (int(v) for v in inside[np.argmin(((inside - inside.mean(axis=0)) ** 2).sum(axis=1))])
    return i, j, k


def _geometry(record: dict) -> tuple[dict[str, Plane], np.ndarray, bool]:
    """The planes, the voxel spacing (mm) and whether the orientation is assumed, from ``record["volume"]``."""
    volume = record.get("volume") or {}
    affine = None if volume.get("affine") is None else np.asarray(volume["affine"], np.float64)
    spacing = volume.get("spacing")
    spacing = np.asarray(spacing if spacing is not None else np.ones(3) if affine is None else voxel_sizes(affine))
    spacing = np.where(spacing > 0, spacing, 1.0).astype(np.float64)  # a header with no pixdim (0) would divide by 0
    return planes(affine), spacing, affine is None

