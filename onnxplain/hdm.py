"""Hausdorff Distance Masks (HDM): occlude the image with a filled circle at every grid position.

`HdmPerturbation` is the ``hdm`` plugin. `HausdorffDistanceMasks`, `HDMResult` and `RAW`,
`BETTER_ONLY`, `WORSE_ONLY` keep the API of the 2019 ``interpret_segmentation.hdm`` module, so its
scripts port by changing the import; the model is an ONNX file or an `OnnxModel` instead of a
PyTorch module.

Differences from the 2019 code, all deliberate: the Hausdorff distance is measured between pixel
coordinates (it treated image rows as points), masks are run in batches, images need not be
square, and circles are centred on the cells of the offset grid (their bounding box used to start
at the cell corner, so the left and top borders were covered less than the right and bottom).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from onnxplain import engine, render
from onnxplain.errors import OnnxplainError
from onnxplain.model import OnnxModel, load_model
from onnxplain.outputs import ModelOutput
from onnxplain.perturbation import Perturbation
from onnxplain.registry import plugin_parameters
from onnxplain.result import Explanation
from onnxplain.scores import HausdorffScore, Score, hausdorff_distance
from onnxplain.targets import Reference

RAW = 1
"""The Hausdorff distance of each masked output to the reference."""
BETTER_ONLY = 2
"""Only masks that brought the output closer to the reference: how much closer."""
WORSE_ONLY = 3
"""Only masks that moved the output away from the reference: how much further."""
_RESULT_TYPES = {RAW: "raw", BETTER_ONLY: "better", WORSE_ONLY: "worse"}


class HdmPerturbation(Perturbation):
    """Filled circles of diameter `circle_size`, one centred on each cell of an `offset` grid.

    There are ``ceil(H / offset) * ceil(W / offset)`` masks, in row-major order of their cells.

    Parameters
    ----------
    circle_size : int, optional
        Circle diameter in pixels; ``min(H, W) * 25 / 240`` rounded when omitted (25 px on testnet).
    offset : int, optional
        Distance between circle centres in pixels; two fifths of the circle size when omitted
        (10 px on testnet: 576 masks, every pixel under about five circles). The 2019 advice of
        5 px on 240×240 images gives a finer map from four times the masks.
    normalize : bool
        Fill circles with -1 instead of 0: black in an image normalised to [-1, 1] (mean 0.5,
        std 0.5), as the 2019 option did. Only useful for images passed already normalised.
    fill, blur_sigma, channel
        See `Perturbation`.

    Examples
    --------
    >>> hdm = HdmPerturbation(circle_size=5, offset=4)
    >>> hdm.count((8, 12))
    6
    >>> masks = hdm.make_masks((8, 12), 0, 6)
    >>> masks.shape, float(masks.min()), float(masks.max())
    ((6, 8, 12), 0.0, 1.0)
    """

    name = "hdm"
    weighting = "occluded"
    default_score = "hausdorff"

    def __init__(
        self,
        *,
        circle_size: int | None = None,
        offset: int | None = None,
        normalize: bool = False,
        fill: str | float = "black",
        blur_sigma: float = 10.0,
        channel: int | None = None,
    ):
        if normalize and fill != "black":
            raise OnnxplainError("normalize fills circles with -1; it cannot be combined with another fill")
        super().__init__(fill=fill, blur_sigma=blur_sigma, channel=channel)
        if circle_size is not None and circle_size < 1:
            raise OnnxplainError(f"circle_size must be at least 1 pixel, got {circle_size}")
        if offset is not None and offset < 1:
            raise OnnxplainError(f"offset must be at least 1 pixel, got {offset}")
        self.circle_size = circle_size
        self.offset = offset
        self.normalize = normalize

    def fill_image(self, image: np.ndarray) -> np.ndarray | float:
        return -1.0 if self.normalize else super().fill_image(image)

    def geometry(self, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """Return (circle_size, offset, rows, columns) for an image of `shape` (H, W)."""
        height, width = shape
        size = self.circle_size or max(3, round(min(height, width) * 25 / 240))
        offset = self.offset or max(1, round(size * 2 / 5))
        return size, offset, math.ceil(height / offset), math.ceil(width / offset)

    def centers(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of every circle centre, in mask order (float, pixel centres at integers)."""
        _, offset, rows, columns = self.geometry(shape)
        middle = (offset - 1) / 2
        row, column = np.divmod(np.arange(rows * columns), columns)
        return row * offset + middle, column * offset + middle

    def _count(self, shape: tuple[int, int]) -> int:
        _, _, rows, columns = self.geometry(shape)
        return rows * columns

    def _make_masks(self, shape: tuple[int, int], start: int, stop: int, seed: int) -> np.ndarray:
        size, offset = self.geometry(shape)[:2]
        center_y, center_x = (c[start:stop] for c in self.centers(shape))
        # Every centre has the same fractional part, so one disc of pixel offsets fits all circles.
        fraction = (offset - 1) / 2 % 1
        reach = math.ceil(size / 2) + 1
        dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
        inside = (dy - fraction) ** 2 + (dx - fraction) ** 2 <= (size / 2) ** 2
        rows = np.floor(center_y).astype(int)[:, None] + dy[inside]
        columns = np.floor(center_x).astype(int)[:, None] + dx[inside]
        which = np.broadcast_to(np.arange(stop - start)[:, None], rows.shape)
        visible = (rows >= 0) & (rows < shape[0]) & (columns >= 0) & (columns < shape[1])
        masks = np.ones((stop - start, *shape), np.float32)
        masks[which[visible], rows[visible], columns[visible]] = 0.0
        return masks

    def pictures(self, explanation: Explanation) -> dict[str, Image.Image]:
        result = HDMResult(explanation)
        return {f"circles_{name}": result.circle_map(kind, color_map="Reds") for kind, name in _RESULT_TYPES.items()}


class HDMResult:
    """The distances of an HDM explanation, in the 2019 API.

    Parameters
    ----------
    explanation : Explanation
        An explanation made with an `HdmPerturbation`.
    """

    def __init__(self, explanation: Explanation):
        if not isinstance(explanation.perturbation, HdmPerturbation):
            raise OnnxplainError("HDMResult needs an explanation made with the hdm perturbation")
        self.explanation = explanation
        self.baseline = explanation.baseline_distance
        self.height, self.width = explanation.saliency.shape
        self.circle_size, self.offset, self.rows, self.columns = explanation.perturbation.geometry(
            (self.height, self.width)
        )

    def distances(self, result_type: int = RAW) -> np.ndarray:
        """Distances as a (rows, columns) grid, one entry per circle position.

        Parameters
        ----------
        result_type : {RAW, BETTER_ONLY, WORSE_ONLY}
            Raw distances; or, relative to the unperturbed distance (`baseline`), how much closer
            (`BETTER_ONLY`) or further (`WORSE_ONLY`) each mask moved the output, 0 elsewhere.

        Returns
        -------
        ndarray of float64, shape (rows, columns)
        """
        grid = self.explanation.distances.reshape(self.rows, self.columns)
        if result_type == RAW:
            return grid.copy()
        if result_type == BETTER_ONLY:
            return np.maximum(self.baseline - grid, 0.0)
        if result_type == WORSE_ONLY:
            return np.maximum(grid - self.baseline, 0.0)
        raise OnnxplainError("result_type must be hdm.RAW, hdm.BETTER_ONLY or hdm.WORSE_ONLY")

    def circle_map(self, result_type: int = RAW, color_map: str = "Reds") -> Image.Image:
        """Draw every circle in the colour of its distance, strongest on top (the 2019 picture).

        Parameters
        ----------
        result_type : {RAW, BETTER_ONLY, WORSE_ONLY}
            Which distances to draw; see `distances`.
        color_map : str
            A matplotlib colormap name; distances are scaled from their minimum to their maximum.

        Returns
        -------
        PIL.Image.Image
            An RGB image of the input's size.
        """
        values = self.distances(result_type).ravel()
        colors = render.colorize(render.normalize(values), color_map)[:, :3]
        picture = Image.new("RGB", (self.width, self.height), 0)
        draw = ImageDraw.Draw(picture)
        rows, columns = self.explanation.perturbation.centers((self.height, self.width))
        radius = self.circle_size / 2
        for i in np.argsort(values, kind="stable"):
            box = (columns[i] - radius, rows[i] - radius, columns[i] + radius, rows[i] + radius)
            draw.ellipse(box, fill=tuple(int(c) for c in colors[i]))
        return picture

    def pixel_map(self, result_type: int = RAW) -> np.ndarray:
        """Pixel-resolution map: each pixel the mean of `distances(result_type)` over the circles covering it.

        Pixels no circle covers get the value an unperturbed image has (the baseline for RAW, 0 otherwise).
        """
        if result_type == RAW:
            return self.explanation.saliency + np.float32(self.baseline)
        grid = self.distances(result_type).ravel()
        return engine.occlusion_map(self.explanation, grid)


class HausdorffDistanceMasks(HdmPerturbation):
    """The 2019 HDM explainer: ``explainer = HausdorffDistanceMasks(240, 240)``.

    Override `apply_mask` or `calculate_distance` in a subclass to change how masks are applied or
    how outputs are compared, as in 2019.

    Parameters
    ----------
    image_width, image_height : int
        Size of the images to explain.
    """

    def __init__(self, image_width: int, image_height: int):
        super().__init__()
        self.width, self.height = int(image_width), int(image_height)

    def parameters(self) -> dict[str, Any]:
        return {"image_width": self.width, "image_height": self.height, **plugin_parameters(self, HdmPerturbation)}

    def generate_masks(self, circle_size: int, offset: int, normalize: bool = False) -> None:
        """Set the circles: `circle_size` px wide every `offset` px; masks are made lazily, in batches."""
        HdmPerturbation.__init__(self, circle_size=circle_size, offset=offset, normalize=normalize)

    def calculate_distance(self, output: np.ndarray, segment: np.ndarray) -> float:
        """Distance between one output mask and the reference segment (2-D arrays): Hausdorff by default."""
        return hausdorff_distance(output, segment)

    def explain(
        self,
        model: OnnxModel | str | Path,
        image: np.ndarray,
        segment: np.ndarray,
        device: str = "auto",
        channel: int = -1,
        *,
        batch_size: int = 16,
        progress: engine.Progress | None = None,
    ) -> HDMResult:
        """Explain one image: occlude it with every circle and measure how far the output moves.

        Parameters
        ----------
        model : OnnxModel, str or Path
            The model, or its ``.onnx`` file (loaded on `device`).
        image : ndarray
            The image, (H, W), (H, W, C), or channels-first (C, H, W) as 2019 tensors were.
        segment : ndarray, shape (H', W')
            The reference segment (non-zero = in the segment).
        device : {'auto', 'cpu', 'cuda'}
            Where to run a model given as a path.
        channel : int
            Channel to occlude, -1 for all.
        batch_size : int
            Perturbed images per forward pass.
        progress : callable, optional
            Called with the number of masks done after each batch.

        Returns
        -------
        HDMResult
        """
        if self.circle_size is None:
            raise OnnxplainError("call generate_masks(circle_size, offset) before explain")
        model = load_model(model, device=device, batch_size=batch_size)
        image = _channels_last(np.asarray(image))
        if image.shape[:2] != (self.height, self.width):
            raise OnnxplainError(
                f"the image is {image.shape[1]}x{image.shape[0]} but this explainer was made for "
                f"{self.width}x{self.height} (width x height)"
            )
        self.channel = None if channel == -1 else channel
        explanation = engine.explain(
            model, image, method=self, score=_SeedScore(self), segment=segment, batch_size=batch_size, progress=progress
        )
        return HDMResult(explanation)


class _SeedScore(Score):
    """Scores with the explainer's `calculate_distance`, so that a subclass can replace it."""

    name = "hausdorff"

    def __init__(self, explainer: HausdorffDistanceMasks):
        self._explainer = explainer
        overridden = type(explainer).calculate_distance is not HausdorffDistanceMasks.calculate_distance
        self._fast = None if overridden else HausdorffScore()

    def _distance(self, outputs: ModelOutput, reference: Reference) -> np.ndarray:
        if self._fast is not None:
            return self._fast._distance(outputs, reference)
        target = reference.restricted_mask()
        return np.array([self._explainer.calculate_distance(m, target) for m in reference.restrict(outputs.mask)])

    def parameters(self) -> dict[str, Any]:
        return {"calculate_distance": type(self._explainer).calculate_distance.__qualname__}


def _channels_last(image: np.ndarray) -> np.ndarray:
    """Accept (H, W), (H, W, C) and, as 2019 tensors were, (C, H, W) with C at most 4."""
    if image.ndim == 3 and image.shape[0] <= 4 < image.shape[2]:
        return np.moveaxis(image, 0, -1)
    return image
