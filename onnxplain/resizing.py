"""Resize batches of images and model outputs to another spatial size (Pillow's filters)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_batch(batch: np.ndarray, size: tuple[int, int], *, axes: tuple[int, int] = (1, 2),
                 nearest: bool = False) -> np.ndarray:
    """Resize the two spatial `axes` of `batch` to `size` (height, width).

    Floats are resampled bilinearly, with antialiasing when shrinking (Pillow's ``BILINEAR``
    filter, whose support widens with the reduction), integers and booleans by nearest neighbour
    or when `nearest` is true.

    Parameters
    ----------
    batch : ndarray
        Any array with two spatial axes, e.g. (n, H, W, C) images or (n, C, H, W) outputs.
    size : (int, int)
        The new (height, width).
    axes : (int, int)
        The spatial axes of `batch`.
    nearest : bool
        Resample by nearest neighbour whatever the dtype (label maps).

    Returns
    -------
    ndarray
        `batch` with its spatial axes resized, float32 for floats, the input dtype otherwise.
    """
    height, width = size
    if tuple(batch.shape[a] for a in axes) == (height, width):
        return batch
    planes = np.moveaxis(batch, axes, (-2, -1))
    flat = planes.reshape(-1, *planes.shape[-2:])
    labels = nearest or batch.dtype.kind in "iub"
    resample = Image.Resampling.NEAREST if labels else Image.Resampling.BILINEAR
    # Pillow resizes one 2-D plane at a time; mode F holds float32 and I int32 exactly.
    dtype = np.int32 if labels else np.float32
    out = np.empty((len(flat), height, width), dtype=dtype)
    for i, plane in enumerate(flat):
        out[i] = np.asarray(Image.fromarray(plane.astype(dtype, copy=False)).resize((width, height), resample))
    out = out.reshape(*planes.shape[:-2], height, width)
    return np.moveaxis(out, (-2, -1), axes).astype(batch.dtype if labels else np.float32, copy=False)
