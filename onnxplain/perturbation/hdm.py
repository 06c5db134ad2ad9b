"""Hausdorff Distance Masks (HDM): occlude the image with a filled ball at every grid position:
circles in 2-D, spheres in 3-D.

Differences from the 2019 code, all deliberate: the Hausdorff distance is measured between pixel
coordinates (it treated image rows as points), masks run in batches, images need not be square,
volumes work too, and circles are centred on the cells of the offset grid (their bounding box used
to start at the cell corner, so the left and top borders were covered less than the right and bottom).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from onnxplain.errors import OnnxplainError
from onnxplain.perturbation.engine import PerturbationMethod
from onnxplain.perturbation.masks import MaskSource
from onnxplain.perturbation.refine import check_refine


def circle_geometry(shape: tuple[int, ...], circle_size: int | None,
                    offset: int | None) -> tuple[int, int, tuple[int, ...]]:
    """Return (circle_size, offset, grid) for an image of spatial `shape`, defaults filled in.

    `grid` is the number of positions along each axis, ``ceil(side / offset)``. When omitted, the
    diameter is ``min(shape) * 25 / 240`` in 2-D (25 px on testnet) and the offset two fifths of it;
    in 3-D (and more) the diameter is ``min(shape) / 6`` and the offset half of it (8 and 4 voxels
    on a 48³ volume: 1,728 spheres), since the number of balls grows with the power of the
    dimension. Diameters are rounded, at least 3; offsets at least 1.

    Examples
    --------
    >>> circle_geometry((240, 240), None, None)
    (25, 10, (24, 24))
    >>> circle_geometry((48, 48, 48), None, None)
    (8, 4, (12, 12, 12))
    """
    if len(shape) <= 2:
        size = circle_size or max(3, round(min(shape) * 25 / 240))
        step = offset or max(1, round(size * 2 / 5))
    else:
        size = circle_size or max(3, round(min(shape) / 6))
        step = offset or max(1, size // 2)
    return size, step, tuple(math.ceil(side / step) for side in shape)


class CircleMasks(MaskSource):
    """Filled balls of diameter `circle_size` (circles in 2-D, spheres in 3-D), one centred on each
    cell of an `offset` grid along every spatial axis.

    There are ``prod(ceil(side / offset))`` masks, in row-major (C) order of their cells; `grid`
    holds the positions per axis. See `circle_geometry` for the defaults.

    Examples
    --------
    >>> circles = CircleMasks((8, 12), circle_size=5, offset=4)
    >>> len(circles), circles.grid
    (6, (2, 3))
    >>> masks = circles.batch(0, 6).masks
    >>> masks.shape, float(masks.min()), float(masks.max())
    ((6, 8, 12), 0.0, 1.0)
    >>> spheres = CircleMasks((8, 8, 12), circle_size=5, offset=4)
    >>> len(spheres), spheres.batch(0, 1).masks.shape
    (12, (1, 8, 8, 12))
    """

    grid: tuple[int, ...]  # always set: balls sit on a regular grid

    def __init__(self, spatial: tuple[int, ...], *, circle_size: int | None = None, offset: int | None = None):
        super().__init__(spatial)
        self.circle_size, self.offset, self.grid = circle_geometry(self.spatial, circle_size, offset)

    @property
    def rows(self) -> int:
        """Positions along the first axis (the grid's rows in 2-D)."""
        return self.grid[0]

    @property
    def columns(self) -> int:
        """Positions along the last axis (the grid's columns in 2-D)."""
        return self.grid[-1]

    def __len__(self) -> int:
        return math.prod(self.grid)

    def centers(self) -> tuple[np.ndarray, ...]:
        """Coordinates of every centre, one array per axis (row and column in 2-D), in mask order
        (float, pixel centres at integers)."""
        middle = (self.offset - 1) / 2
        positions = np.unravel_index(np.arange(len(self)), self.grid)
        return tuple(position * self.offset + middle for position in positions)

    def _masks(self, start: int, stop: int) -> np.ndarray:
        centers = [center[start:stop] for center in self.centers()]
        # Every centre has the same fractional part, so one ball of pixel offsets fits all of them.
        fraction = (self.offset - 1) / 2 % 1
        reach = math.ceil(self.circle_size / 2) + 1
        steps = np.indices((2 * reach + 1,) * len(self.spatial)) - reach  # (axes, *window)
        inside = ((steps - fraction) ** 2).sum(axis=0) <= (self.circle_size / 2) ** 2
        ball = steps[:, inside]  # (axes, pixels of the ball)
        pixels = [np.floor(center).astype(int)[:, None] + step for center, step in zip(centers, ball, strict=True)]
        visible = np.ones(pixels[0].shape, bool)
        for coordinate, side in zip(pixels, self.spatial, strict=True):
            visible &= (coordinate >= 0) & (coordinate < side)
        which = np.broadcast_to(np.arange(stop - start)[:, None], visible.shape)
        masks = np.ones((stop - start, *self.spatial), np.float32)
        masks[(which[visible], *(coordinate[visible] for coordinate in pixels))] = 0.0
        return masks

    def arrays(self) -> dict[str, np.ndarray]:
        """``'circles'``: one row per ball, its centre's coordinates (row, column in 2-D) then its radius."""
        centers = self.centers()
        return {"circles": np.stack([*centers, np.full(len(self), self.circle_size / 2)], axis=1)}


VARIANTS = {"segment": ("segment-distance", "blur"), "2019": ("hausdorff", "black")}
"""HDM's defaults, by name: (score, fill)."""


class Hdm(PerturbationMethod):
    """Hausdorff Distance Masks: a filled circle (a sphere in 3-D) at every grid position, the distance
    between each occluded output and the reference, averaged over the circles hiding each pixel.

    Positive map values: hiding the pixel moves the output away from the reference.

    By default (``variant='segment'``) circles are filled with a blurred copy of the image and the
    distance is the ``segment-distance`` score, the mean distance from the segment's pixels to
    the output: hiding a background patch that makes the model add a far-away false positive does
    not count, so the map points at what the segment depends on. ``variant='2019'`` is the 2019
    library's HDM: black circles and the symmetric Hausdorff distance. Measured on real models
    and on testnet, the default's maps pass the deletion test (SRG) better: see the README.

    Parameters
    ----------
    circle_size : int, optional
        Circle (sphere) diameter in pixels. When omitted, ``min(H, W) * 25 / 240`` rounded in 2-D
        (25 px on testnet); ``min(D, H, W) / 6`` rounded in 3-D (8 voxels on a 48³ volume).
    offset : int, optional
        Distance between centres in pixels, along every axis. When omitted, two fifths of the circle
        size in 2-D (10 px on testnet: 576 masks, every pixel under about five circles); half the
        sphere size in 3-D (4 voxels on a 48³ volume: 1,728 masks).
    normalize : bool
        Fill circles with -1 instead of 0: black in an image normalised to [-1, 1], as the 2019
        option did. Only useful for images passed already normalised.
    variant : {'segment', '2019'}
        The default score and fill; a `score` or `fill` given explicitly wins.
    refine : float, optional
        Coarse-to-fine, fewer circles where nothing changes: first every `refine_step`-th position
        along each axis, and one probe per block of `refine_step` positions hiding all its circles at
        once; then, halving the step down to 1, only the positions within one cell of a position
        whose change of the score exceeds `refine` times the largest change (0.05, say), and those
        of a block whose probe did where none of its positions has yet; the map comes from the
        positions evaluated (`onnxplain.perturbation.refine`). Off when omitted: every position.
        The record says how many positions and probes were evaluated.
    refine_step : int
        Step of the coarse grid, in positions; 2 or more.
    **options
        fill, blur_sigma, channel, score, aggregator, seed: see `PerturbationMethod`.
    """

    name = "hdm"
    default_score = "segment-distance"
    default_aggregator = "occluded-mean"

    def __init__(self, *, circle_size: int | None = None, offset: int | None = None, normalize: bool = False,
                 variant: str = "segment", refine: float | None = None, refine_step: int = 4, **options: Any):
        if variant not in VARIANTS:
            raise OnnxplainError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}",
                                 parameters=("variant",))
        score, fill = VARIANTS[variant]
        if normalize and options.get("fill", "black") != "black":
            raise OnnxplainError("normalize fills circles with -1; it cannot be combined with another fill",
                                 parameters=("normalize", "fill"))
        options["score"] = options.get("score") or score
        options.setdefault("fill", "black" if normalize else fill)
        super().__init__(**options)
        if circle_size is not None and circle_size < 1:
            raise OnnxplainError(f"circle_size must be at least 1 pixel, got {circle_size}",
                                 parameters=("circle_size",))
        if offset is not None and offset < 1:
            raise OnnxplainError(f"offset must be at least 1 pixel, got {offset}", parameters=("offset",))
        self.circle_size = circle_size
        self.offset = offset
        self.normalize = normalize
        self.variant = variant
        check_refine(refine, refine_step)
        self.refine = refine
        self.refine_step = refine_step

    def mask_source(self, image: np.ndarray) -> CircleMasks:
        return CircleMasks(image.shape[:-1], circle_size=self.circle_size, offset=self.offset)

    def apply(self, image: np.ndarray, masks: np.ndarray, fill: np.ndarray | float) -> np.ndarray:
        return super().apply(image, masks, -1.0 if self.normalize else fill)
