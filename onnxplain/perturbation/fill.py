"""Fills: what hidden pixels become. Black, the image mean, a blur, a constant, or one value per channel."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from onnxplain.errors import OnnxplainError

FILLS = ("black", "mean", "blur")

Fill = str | float | Sequence[float]
"""A fill: ``'black'``, ``'mean'``, ``'blur'``, a number, or one number per channel (also as ``'0.1,0.2,0.3'``)."""


def check_fill(fill: Fill, *, name: str = "fill") -> Fill:
    """Return `fill` in a canonical form (a name, a float or a tuple of floats) or say why it is no fill."""
    if isinstance(fill, str) and fill in FILLS:
        return fill
    if isinstance(fill, (int, float)):
        return float(fill)
    try:
        values = tuple(float(v) for v in (fill.split(",") if isinstance(fill, str) else fill))
    except (TypeError, ValueError):
        raise OnnxplainError(
            f"{name} must be one of {', '.join(FILLS)}, a number or one number per channel, got {fill!r}",
            parameters=(name,),
        ) from None
    return values[0] if isinstance(fill, str) and len(values) == 1 else values


def fill_image(image: np.ndarray, fill: Fill, *, blur_sigma: float = 10.0) -> np.ndarray | float:
    """What hidden pixels of `image` (*spatial, C) become under `fill`.

    Parameters
    ----------
    image : ndarray of float32, shape (*spatial, C)
        The image.
    fill : {'black', 'mean', 'blur'}, float or sequence of float
        0; the image's mean per channel; the image blurred by a Gaussian of `blur_sigma` pixels
        along every spatial axis; a constant; or one constant per channel (in image space, where
        images are in [0, 1]).
    blur_sigma : float
        Standard deviation of the blur, in pixels.

    Returns
    -------
    float or ndarray of float32
        A constant, or an array that broadcasts against `image`.

    Examples
    --------
    >>> image = np.ones((4, 4, 3), np.float32)
    >>> fill_image(image, "0.1,0.2,0.3").tolist()
    [0.10000000149011612, 0.20000000298023224, 0.30000001192092896]
    """
    fill = check_fill(fill)
    if isinstance(fill, float):
        return fill
    if isinstance(fill, tuple):
        if len(fill) != image.shape[-1]:
            raise OnnxplainError(
                f"the fill gives {len(fill)} values but the image has {image.shape[-1]} channel(s); "
                "give one value, or one per channel",
                parameters=("fill",),
            )
        return np.asarray(fill, np.float32)
    if fill == "black":
        return 0.0
    spatial_axes = tuple(range(image.ndim - 1))
    if fill == "mean":
        return image.mean(axis=spatial_axes, keepdims=True).astype(np.float32)
    if blur_sigma <= 0:
        raise OnnxplainError(f"blur_sigma must be positive, got {blur_sigma}", parameters=("blur_sigma",))
    return gaussian_filter(image, sigma=(blur_sigma,) * len(spatial_axes) + (0,)).astype(np.float32)


def blend(image: np.ndarray, masks: np.ndarray, fill: np.ndarray | float, *, channel: int | None = None) -> np.ndarray:
    """``image * mask + fill * (1 - mask)`` for each mask: new perturbed images, `image` unchanged.

    Parameters
    ----------
    image : ndarray of float32, shape (*spatial, C)
        The image.
    masks : ndarray of float32, shape (n, *spatial)
        1 keeps a pixel, 0 replaces it by the fill.
    fill : float or ndarray
        From `fill_image`.
    channel : int, optional
        Perturb this channel only; all channels when omitted.

    Returns
    -------
    ndarray of float32, shape (n, *spatial, C)
    """
    weights = masks[..., None]
    # Written as image * mask + fill * (1 - mask), exact at both ends: a pixel its mask keeps (1) is the
    # image's own value, bit for bit (a model on patches then sees untouched patches as unchanged), and
    # one it hides (0) is the fill's.
    if channel is None:
        if isinstance(fill, float) and fill == 0.0:
            return image * weights  # black fill: no zeros to add
        perturbed = image * weights
        perturbed += fill * (1.0 - weights)
        return perturbed
    if not 0 <= channel < image.shape[-1]:
        raise OnnxplainError(f"channel {channel} does not exist in an image of {image.shape[-1]} channel(s)",
                             parameters=("channel",))
    perturbed = np.repeat(image[None], len(masks), axis=0)
    part = np.asarray(fill)[..., channel : channel + 1] if np.ndim(fill) else fill
    kept = image[..., channel : channel + 1]
    perturbed[..., channel : channel + 1] = kept * weights + part * (1.0 - weights)
    return perturbed
