"""Occlusion: a box slides over the image (any number of spatial axes) and hides what it covers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from onnxplain.errors import OnnxplainError
from onnxplain.perturbation.engine import PerturbationMethod
from onnxplain.perturbation.masks import MaskSource
from onnxplain.perturbation.refine import check_refine


class BoxMasks(MaskSource):
    """A `window`-wide box every `stride` pixels along each spatial axis, clipped at the image's edge.

    Boxes start at 0, stride, 2 stride... until one reaches the far edge: ``ceil((side - window) /
    stride) + 1`` per axis, as Captum's ``Occlusion`` places its sliding windows.

    Examples
    --------
    >>> boxes = BoxMasks((10, 10), window=4, stride=3)
    >>> len(boxes), int((boxes.batch(0, 1).masks == 0).sum())
    (9, 16)
    """

    def __init__(self, spatial: tuple[int, ...], *, window: int, stride: int):
        super().__init__(spatial)
        self.window = [min(window, side) for side in self.spatial]
        self.stride = stride
        self.steps = [math.ceil((side - size) / stride) + 1 for side, size in zip(self.spatial, self.window,
                                                                                  strict=True)]
        self.grid = tuple(self.steps)

    def __len__(self) -> int:
        return math.prod(self.steps)

    def _masks(self, start: int, stop: int) -> np.ndarray:
        masks = np.ones((stop - start, *self.spatial), np.float32)
        for k, index in enumerate(range(start, stop)):
            position = np.unravel_index(index, self.steps)
            corner = [int(p) * self.stride for p in position]
            masks[k][tuple(slice(c, c + size) for c, size in zip(corner, self.window, strict=True))] = 0.0
        return masks


class Occlusion(PerturbationMethod):
    """Occlusion (Zeiler and Fergus, 2014): hide a sliding box and see how far the output moves.

    Each pixel gets the mean change of the score over the boxes that covered it. With the class
    score, this is Captum's ``Occlusion`` with the same windows, strides and fill.

    Parameters
    ----------
    window : int
        Side of the box in pixels, along every spatial axis.
    stride : int
        Distance between box positions, in pixels.
    refine : float, optional
        Coarse-to-fine, fewer boxes where nothing changes: first every `refine_step`-th position
        along each axis, and one probe per block of `refine_step` positions hiding all its boxes at
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

    name = "occlusion"
    default_score = "class-score"
    default_aggregator = "occluded-mean"

    def __init__(self, *, window: int = 24, stride: int = 8, refine: float | None = None, refine_step: int = 4,
                 **options: Any):
        super().__init__(**options)
        if window < 1 or stride < 1:
            raise OnnxplainError(f"window and stride must be at least 1 pixel, got {window} and {stride}",
                                 parameters=("window", "stride"))
        if stride > window:  # pixels between boxes would never be hidden, and would read as irrelevant
            raise OnnxplainError(f"stride ({stride}) must not exceed window ({window})", parameters=("stride",))
        self.window = window
        self.stride = stride
        check_refine(refine, refine_step)
        self.refine = refine
        self.refine_step = refine_step

    def mask_source(self, image: np.ndarray) -> BoxMasks:
        return BoxMasks(image.shape[:-1], window=self.window, stride=self.stride)
