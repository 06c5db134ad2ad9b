"""Occlusion by blurring: a square window slides over the image, and what it covers is blurred."""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxplain.errors import OnnxplainError
from onnxplain.perturbation import MaskSource, PerturbationMethod


class CenteredSquares(MaskSource):
    """A `window` px square centred on each cell of a `stride` px grid, clipped at the image's edge."""

    def __init__(self, spatial: tuple[int, ...], *, window: int, stride: int):
        super().__init__(spatial)
        self.window, self.stride = window, stride
        self.columns = -(-self.spatial[1] // stride)

    def __len__(self) -> int:
        return -(-self.spatial[0] // self.stride) * self.columns

    def _masks(self, start: int, stop: int) -> np.ndarray:
        masks = np.ones((stop - start, *self.spatial), np.float32)
        half = self.window // 2
        for k, index in enumerate(range(start, stop)):
            row, column = divmod(index, self.columns)
            top = max(row * self.stride + self.stride // 2 - half, 0)
            left = max(column * self.stride + self.stride // 2 - half, 0)
            masks[k, top : top + self.window, left : left + self.window] = 0.0
        return masks


class BlurOcclusion(PerturbationMethod):
    """Blur a `window` px square every `stride` px and see how far the output moves.

    Blurring removes the detail under the window without drawing the sharp black edges that a
    black occluder adds, which a network may react to by itself.

    Parameters
    ----------
    window : int
        Side of the square, in pixels.
    stride : int
        Distance between windows, in pixels.
    blur_sigma : float
        Standard deviation of the Gaussian blur, in pixels.
    score, aggregator, seed
        See `onnxplain.perturbation.PerturbationMethod`; the fill is always the blur.
    """

    name = "blur"
    default_score = "hausdorff"
    default_aggregator = "occluded-mean"

    def __init__(self, *, window: int = 24, stride: int = 8, blur_sigma: float = 6.0, score: Any = None,
                 aggregator: Any = None, seed: int = 0):
        super().__init__(fill="blur", blur_sigma=blur_sigma, score=score, aggregator=aggregator, seed=seed)
        if window < 1 or stride < 1:
            raise OnnxplainError(f"window and stride must be at least 1 pixel, got {window} and {stride}")
        self.window = window
        self.stride = stride

    def mask_source(self, image: np.ndarray) -> CenteredSquares:
        if image.ndim != 3:
            raise OnnxplainError(f"blur occlusion is 2-D; the image is shaped {image.shape}")
        return CenteredSquares(image.shape[:-1], window=self.window, stride=self.stride)
