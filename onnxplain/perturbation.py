"""The perturbation interface: make masks over an image and apply them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from scipy.ndimage import gaussian_filter

from onnxplain.errors import OnnxplainError, PluginError
from onnxplain.registry import plugin_parameters

FILLS = ("black", "mean", "blur")
WEIGHTINGS = ("occluded", "kept")


class Perturbation(ABC):
    """Makes masks over an image and applies them: the first half of a perturbation explainer.

    Contract of every perturbation:

    - masks are float32 arrays shaped (n, H, W) with values in [0, 1]: 1 leaves a pixel untouched,
      0 replaces it entirely by the fill;
    - mask ``i`` depends only on the parameters, the image size, the seed and ``i``, so masks can be
      made lazily in any batches, in any order, and made again identically;
    - `apply_mask` returns new arrays and never changes the image it is given.

    `weighting` tells the engine how distances become a map: ``'occluded'`` averages each mask's
    distance over the pixels it hides (occlusion, HDM), ``'kept'`` over the pixels it keeps (RISE).

    Subclasses implement `_count` and `_make_masks`, keep each constructor argument as an attribute
    of the same name, and may override `apply_mask`.

    Parameters
    ----------
    fill : {'black', 'mean', 'blur'} or float
        What replaces hidden pixels: 0, the image mean, the image blurred by a Gaussian of
        `blur_sigma` pixels, or a constant (in image space, where images are in [0, 1]).
    blur_sigma : float
        Standard deviation of the blur fill, in pixels.
    channel : int, optional
        Apply masks to this image channel only; all channels when omitted.
    """

    name: ClassVar[str] = ""
    weighting: ClassVar[str] = "occluded"
    default_score: ClassVar[str] = "hausdorff"

    def __init__(self, *, fill: str | float = "black", blur_sigma: float = 10.0, channel: int | None = None):
        if isinstance(fill, str) and fill not in FILLS:
            raise OnnxplainError(f"fill must be one of {', '.join(FILLS)} or a number, got {fill!r}")
        if blur_sigma <= 0:
            raise OnnxplainError(f"blur_sigma must be positive, got {blur_sigma}")
        if channel is not None and channel < 0:
            raise OnnxplainError(f"channel must be non-negative, got {channel}")
        self.fill = fill
        self.blur_sigma = blur_sigma
        self.channel = channel
        self._fill_cache: tuple[np.ndarray, np.ndarray] | None = None

    # --- masks --------------------------------------------------------------------------------

    def count(self, shape: tuple[int, int]) -> int:
        """Number of masks for an image of `shape` (H, W)."""
        return self._count(_check_shape(shape))

    def make_masks(self, shape: tuple[int, int], start: int, stop: int, *, seed: int = 0) -> np.ndarray:
        """Make masks number `start` to `stop` (excluded) for an image of `shape` (H, W).

        Parameters
        ----------
        shape : tuple of int
            Image height and width.
        start, stop : int
            Range of mask numbers, within ``[0, count(shape)]``.
        seed : int
            Seed of the random choices, for perturbations that make any.

        Returns
        -------
        ndarray of float32, shape (stop - start, H, W)
        """
        shape = _check_shape(shape)
        total = self.count(shape)
        if not 0 <= start <= stop <= total:
            raise OnnxplainError(f"mask range {start}:{stop} is outside 0:{total}")
        masks = self._make_masks(shape, start, stop, seed)
        if masks.shape != (stop - start, *shape):
            raise PluginError(
                f"perturbation {self.name!r} made masks shaped {masks.shape}, expected {(stop - start, *shape)}"
            )
        return masks.astype(np.float32, copy=False)

    @abstractmethod
    def _count(self, shape: tuple[int, int]) -> int:
        """Number of masks for an image of `shape`."""

    @abstractmethod
    def _make_masks(self, shape: tuple[int, int], start: int, stop: int, seed: int) -> np.ndarray:
        """Masks `start` to `stop` for `shape`, float32 in [0, 1], 1 meaning untouched."""

    # --- applying -----------------------------------------------------------------------------

    def apply_mask(self, image: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Blend `image` with the fill through each mask: ``image * mask + fill * (1 - mask)``.

        Override this to perturb differently; the engine calls it once per batch.

        Parameters
        ----------
        image : ndarray of float32, shape (H, W, C)
            The image, in image space.
        masks : ndarray of float32, shape (n, H, W)
            Masks from `make_masks`.

        Returns
        -------
        ndarray of float32, shape (n, H, W, C)
            New perturbed images; `image` is left unchanged.
        """
        weights = masks[..., None]
        if self.channel is None:
            perturbed = self._blend(image, weights)
        else:
            if self.channel >= image.shape[2]:
                raise OnnxplainError(
                    f"channel {self.channel} does not exist in an image of {image.shape[2]} channel(s)"
                )
            perturbed = np.repeat(image[None], len(masks), axis=0)
            c = slice(self.channel, self.channel + 1)
            perturbed[..., c] = self._blend(image[..., c], weights)
        return perturbed

    def _blend(self, image: np.ndarray, weights: np.ndarray) -> np.ndarray:
        fill = self.fill_image(image)
        if isinstance(fill, float) and fill == 0.0:
            return image * weights  # black fill: no need to add zeros
        return fill + (image - fill) * weights

    def fill_image(self, image: np.ndarray) -> np.ndarray | float:
        """What hidden pixels of `image` (H, W, C) become: a constant or an array like `image`."""
        # The blurred image is computed once per image, not once per batch.
        if self._fill_cache is None or self._fill_cache[0] is not image:
            self._fill_cache = (image, fill_image(image, self.fill, blur_sigma=self.blur_sigma))
        return self._fill_cache[1]

    # --- description --------------------------------------------------------------------------

    def parameters(self) -> dict[str, Any]:
        """The constructor arguments, as recorded with each explanation."""
        return plugin_parameters(self)

    def pictures(self, explanation: Any) -> dict:
        """Pictures of its own that this perturbation adds to a saved explanation (name to PIL image)."""
        return {}

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.parameters().items())
        return f"{type(self).__name__}({arguments})"


def fill_image(image: np.ndarray, fill: str | float, *, blur_sigma: float = 10.0) -> np.ndarray | float:
    """What hidden pixels of `image` (H, W, C) become under `fill`.

    Parameters
    ----------
    image : ndarray of float32, shape (H, W, C)
        The image.
    fill : {'black', 'mean', 'blur'} or float
        0, the image's mean per channel, the image blurred by a Gaussian of `blur_sigma` pixels, or
        a constant.
    blur_sigma : float
        Standard deviation of the blur, in pixels.

    Returns
    -------
    float or ndarray of float32
        A constant, or an array that broadcasts against `image`.
    """
    if not isinstance(fill, str):
        return float(fill)
    if fill == "black":
        return 0.0
    if fill == "mean":
        return image.mean(axis=(0, 1), keepdims=True).astype(np.float32)
    if fill == "blur":
        return gaussian_filter(image, sigma=(blur_sigma, blur_sigma, 0)).astype(np.float32)
    raise OnnxplainError(f"fill must be one of {', '.join(FILLS)} or a number, got {fill!r}")


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    if len(shape) != 2 or min(shape) < 1:
        raise OnnxplainError(f"an image shape is (height, width) with both at least 1, got {shape}")
    return int(shape[0]), int(shape[1])
