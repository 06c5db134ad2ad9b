"""The 2019 ``interpret_segmentation.hdm`` API: `HausdorffDistanceMasks`, `HDMResult`, `RAW`,
`BETTER_ONLY`, `WORSE_ONLY`.

What changed on purpose is listed in `onnxplain.perturbation.hdm`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from onnxplain import render
from onnxplain.attribution import Attribution
from onnxplain.distances import hausdorff_distance
from onnxplain.errors import OnnxplainError
from onnxplain.method import Progress
from onnxplain.model import OnnxModel, load_model
from onnxplain.outputs import ModelOutput
from onnxplain.perturbation.aggregate import OccludedMean
from onnxplain.perturbation.engine import reaggregate
from onnxplain.perturbation.hdm import CircleMasks, Hdm
from onnxplain.registry import plugin_parameters
from onnxplain.scores import HausdorffScore, Score
from onnxplain.targets import Reference

RAW = 1
"""The Hausdorff distance of each masked output to the reference."""
BETTER_ONLY = 2
"""Only masks that brought the output closer to the reference: how much closer."""
WORSE_ONLY = 3
"""Only masks that moved the output away from the reference: how much further."""
_KINDS = {RAW: "raw", BETTER_ONLY: "better", WORSE_ONLY: "worse"}


class HDMResult:
    """The distances of an HDM explanation, in the 2019 API.

    Parameters
    ----------
    attribution : Attribution
        An attribution made by the ``hdm`` method.
    circles : CircleMasks
        Its circles.
    """

    def __init__(self, attribution: Attribution, circles: CircleMasks):
        self.attribution = attribution
        self.circles = circles
        self.baseline = attribution.baseline_value
        self.height, self.width = attribution.map.shape

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
        if result_type not in _KINDS:
            raise OnnxplainError("result_type must be hdm.RAW, hdm.BETTER_ONLY or hdm.WORSE_ONLY")
        values = render.circle_values(self.attribution.values, self.baseline, _KINDS[result_type])
        return values.reshape(self.circles.rows, self.circles.columns)

    def circle_map(self, result_type: int = RAW, color_map: str = "Reds") -> Image.Image:
        """Draw every circle in the colour of its distance, strongest on top (the 2019 picture)."""
        values = self.distances(result_type).ravel()
        return render.circle_map(values, self.circles.arrays()["circles"], (self.height, self.width),
                                 color_map=color_map)

    def pixel_map(self, result_type: int = RAW) -> np.ndarray:
        """Pixel-resolution map: each pixel the mean of `distances(result_type)` over the circles covering it.

        Pixels no circle covers get the value an unperturbed image has (the baseline for RAW, 0 otherwise).
        """
        if result_type == RAW:
            return self.attribution.map + np.float32(self.baseline)
        return reaggregate(self.circles, OccludedMean(), self.distances(result_type).ravel())


class HausdorffDistanceMasks:
    """The 2019 HDM explainer: ``explainer = HausdorffDistanceMasks(240, 240)``.

    Override `apply_mask` or `calculate_distance` in a subclass to change how masks are applied or
    how outputs are compared, as in 2019.

    Parameters
    ----------
    image_width, image_height : int
        Size of the images to explain.
    """

    def __init__(self, image_width: int, image_height: int):
        self.width, self.height = int(image_width), int(image_height)
        self.circle_size: int | None = None
        self.offset: int | None = None
        self.normalize = False

    def generate_masks(self, circle_size: int, offset: int, normalize: bool = False) -> None:
        """Set the circles: `circle_size` px wide every `offset` px; masks are made lazily, in batches."""
        Hdm(circle_size=circle_size, offset=offset, normalize=normalize)  # checks the values
        self.circle_size, self.offset, self.normalize = circle_size, offset, normalize

    def make_masks(self, start: int, stop: int) -> np.ndarray:
        """Masks `start` to `stop` (float32, (n, H, W), 0 inside the circle)."""
        return self._circles().batch(start, stop).masks

    def apply_mask(self, image: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Perturbed images (n, H, W, C): `image` (H, W, C) with each mask's circle filled."""
        fill = -1.0 if self.normalize else 0.0
        return fill + (image - fill) * masks[..., None]

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
        progress: Progress | None = None,
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
        image = channels_last(np.asarray(image))
        if image.shape[:2] != (self.height, self.width):
            raise OnnxplainError(
                f"the image is {image.shape[1]}x{image.shape[0]} but this explainer was made for "
                f"{self.width}x{self.height} (width x height)"
            )
        method = _ExplainerHdm(self, channel=None if channel == -1 else channel)
        attribution = method.attribute(model, image, segment=segment, batch_size=batch_size, progress=progress)
        return HDMResult(attribution, self._circles())

    def _circles(self) -> CircleMasks:
        return CircleMasks((self.height, self.width), circle_size=self.circle_size, offset=self.offset)


class _ExplainerHdm(Hdm):
    """HDM that applies masks and scores outputs with the explainer's methods, so a subclass can swap them."""

    def __init__(self, explainer: HausdorffDistanceMasks, channel: int | None):
        super().__init__(circle_size=explainer.circle_size, offset=explainer.offset, normalize=explainer.normalize,
                         channel=channel, score=_ExplainerScore(explainer), variant="2019")
        self.explainer = explainer

    def apply(self, image: np.ndarray, masks: np.ndarray, fill: np.ndarray | float) -> np.ndarray:
        if type(self.explainer).apply_mask is HausdorffDistanceMasks.apply_mask:
            return super().apply(image, masks, fill)  # the channel option applies
        return self.explainer.apply_mask(image, masks)

    def parameters(self) -> dict[str, Any]:
        return {**plugin_parameters(self, Hdm), "explainer": type(self.explainer).__qualname__}


class _ExplainerScore(Score):
    """Scores with the explainer's `calculate_distance`; the fast Hausdorff score when it is not overridden."""

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


def channels_last(image: np.ndarray) -> np.ndarray:
    """Accept (H, W), (H, W, C) and, as 2019 tensors were, (C, H, W) with C at most 4, or (1, C, H, W)."""
    if image.ndim == 4 and image.shape[0] == 1:  # the 2019 examples passed a batch of one
        image = image[0]
    if image.ndim == 3 and image.shape[0] <= 4 < image.shape[2]:
        return np.moveaxis(image, 0, -1)
    return image
