"""Occlusion by blurring: a square window slides over the image, and what it covers is blurred."""

from __future__ import annotations

import math

import numpy as np

from onnxplain.errors import OnnxplainError
from onnxplain.perturbation import Perturbation


class BlurPerturbation(Perturbation):
    """A `window` px square every `stride` px whose pixels are replaced by a blurred copy of the image.

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
    """

    name = "blur"
    weighting = "occluded"
    default_score = "hausdorff"

    def __init__(self, *, window: int = 24, stride: int = 8, blur_sigma: float = 6.0):
        super().__init__(fill="blur", blur_sigma=blur_sigma)
        if window < 1 or stride < 1:
            raise OnnxplainError(f"window and stride must be at least 1 pixel, got {window} and {stride}")
        self.window = window
        self.stride = stride

    def _grid(self, shape: tuple[int, int]) -> tuple[int, int]:
        return math.ceil(shape[0] / self.stride), math.ceil(shape[1] / self.stride)

    def _count(self, shape: tuple[int, int]) -> int:
        rows, columns = self._grid(shape)
        return rows * columns

    def _make_masks(self, shape: tuple[int, int], start: int, stop: int, seed: int) -> np.ndarray:
        _, columns = self._grid(shape)
        masks = np.ones((stop - start, *shape), np.float32)
        half = self.window // 2
        for k, index in enumerate(range(start, stop)):
            row, column = divmod(index, columns)
            top = max(row * self.stride + self.stride // 2 - half, 0)
            left = max(column * self.stride + self.stride // 2 - half, 0)
            masks[k, top : top + self.window, left : left + self.window] = 0.0
        return masks
