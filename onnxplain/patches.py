"""Patch-based inference: a model run over a volume larger than its input, patch by patch.

Patches of the model's size slide over the volume with an overlap (half a patch by default), and
their outputs are blended with a Gaussian importance map centred on each patch, as nnU-Net and
MONAI do: a voxel near a patch's edge, where the network saw little context, counts less than one
near its centre. Patches run in batches, so the network's memory grows with the batch, not with the
volume; only the input, the output and one weight volume are whole.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

from onnxplain.errors import OnnxplainError


def patch_starts(side: int, patch: int, overlap: float) -> list[int]:
    """Start of every patch along one axis: from 0 to ``side - patch``, at most ``patch * (1 - overlap)`` apart.

    Examples
    --------
    >>> patch_starts(100, 48, 0.5)
    [0, 17, 35, 52]
    >>> patch_starts(48, 48, 0.5)
    [0]
    """
    if side < patch:
        raise OnnxplainError(f"the volume is {side} voxels along an axis where the patch is {patch}; pad the volume "
                             "to at least the patch size, or give a smaller patch")
    if not 0 <= overlap < 1:
        raise OnnxplainError(f"overlap is a share of the patch in [0, 1), got {overlap}", parameters=("overlap",))
    step = max(1, math.floor(patch * (1 - overlap)))
    count = math.ceil((side - patch) / step) + 1
    if count == 1:
        return [0]
    # Evenly spread from the first voxel to the last, so that no patch hangs over the far edge.
    return [round(i * (side - patch) / (count - 1)) for i in range(count)]


def gaussian_importance(patch: Sequence[int], *, sigma_scale: float = 0.125) -> np.ndarray:
    """A Gaussian over the patch, 1 at its centre, sigma ``sigma_scale`` of its side along each axis.

    Its smallest values are raised to the smallest non-zero one, so that every voxel of a patch
    counts a little (nnU-Net's choice).
    """
    axes = [np.exp(-0.5 * ((np.arange(side) - (side - 1) / 2) / max(side * sigma_scale, 1e-6)) ** 2)
            for side in patch]
    weights = axes[0]
    for axis in axes[1:]:
        weights = np.multiply.outer(weights, axis)
    weights = (weights / weights.max()).astype(np.float32)
    weights[weights == 0] = weights[weights > 0].min()
    return weights


def sliding_window(
    volume: np.ndarray,
    patch: Sequence[int],
    predict: Callable[[np.ndarray], np.ndarray],
    *,
    overlap: float = 0.5,
    batch_size: int = 4,
    sigma_scale: float = 0.125,
) -> np.ndarray:
    """Run `predict` over `volume` patch by patch and blend the patches' outputs.

    Parameters
    ----------
    volume : ndarray, shape (C, *spatial)
        The input, channels first.
    patch : sequence of int
        The model's spatial input size, one per spatial axis.
    predict : callable
        ``predict(patches)``: patches shaped (n, C, *patch) in, outputs shaped (n, K, *patch) out.
    overlap : float
        Share of a patch that its neighbour covers again, in [0, 1).
    batch_size : int
        Patches per call of `predict`.
    sigma_scale : float
        Width of the Gaussian importance map, as a share of the patch.

    Returns
    -------
    ndarray of float32, shape (K, *spatial)
    """
    spatial = volume.shape[1:]
    if len(patch) != len(spatial):
        raise OnnxplainError(f"the patch {tuple(patch)} has {len(patch)} axes, the volume {len(spatial)} "
                             f"spatial axes (shape {volume.shape}, channels first)")
    starts = [patch_starts(side, size, overlap) for side, size in zip(spatial, patch, strict=True)]
    corners = list(itertools.product(*starts))
    importance = gaussian_importance(patch, sigma_scale=sigma_scale)
    output: np.ndarray | None = None
    weights = np.zeros(spatial, np.float32)
    for first in range(0, len(corners), batch_size):
        chosen = corners[first:first + batch_size]
        windows = [tuple(slice(c, c + size) for c, size in zip(corner, patch, strict=True)) for corner in chosen]
        batch = np.stack([volume[(slice(None), *window)] for window in windows])
        result = np.asarray(predict(batch), np.float32)
        if result.ndim != batch.ndim or result.shape[0] != len(chosen) or result.shape[2:] != tuple(patch):
            raise OnnxplainError(f"patch inference returned shape {result.shape} for patches shaped {batch.shape}; "
                                 "the model must keep the patch's spatial size")
        if output is None:
            output = np.zeros((result.shape[1], *spatial), np.float32)
        for window, values in zip(windows, result, strict=True):
            output[(slice(None), *window)] += values * importance
            weights[window] += importance
    assert output is not None  # there is always at least one patch
    return output / weights
