"""Patch-based inference: a model run over a volume larger than its input, patch by patch.

Patches of the model's size slide over the volume with an overlap (half a patch by default), and
their outputs are blended with a Gaussian importance map centred on each patch, as nnU-Net and
MONAI do: a voxel near a patch's edge, where the network saw little context, counts less than one
near its centre. Patches run in batches, so the network's memory grows with the batch, not with the
volume; only the input, the output and one weight volume are whole.
"""

from __future__ import annotations

import functools
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


class PatchGrid:
    """The patches that cover a volume: where each sits, and how their outputs blend.

    Parameters
    ----------
    spatial : tuple of int
        The volume's spatial shape.
    patch : sequence of int
        The model's spatial input size, one per spatial axis.
    overlap : float
        Share of a patch that its neighbour covers again, in [0, 1).
    sigma_scale : float
        Width of the Gaussian importance map, as a share of the patch.

    Examples
    --------
    >>> grid = PatchGrid((96, 96, 96), (48, 48, 48))
    >>> len(grid), grid.windows[1]
    (27, (slice(0, 48, None), slice(0, 48, None), slice(24, 72, None)))
    """

    def __init__(self, spatial: Sequence[int], patch: Sequence[int], *, overlap: float = 0.5,
                 sigma_scale: float = 0.125):
        self.spatial, self.patch = tuple(int(s) for s in spatial), tuple(int(s) for s in patch)
        if len(self.patch) != len(self.spatial):
            raise OnnxplainError(f"the patch {self.patch} has {len(self.patch)} axes, the volume {len(self.spatial)} "
                                 f"spatial axes (spatial shape {self.spatial})")
        starts = [patch_starts(side, size, overlap) for side, size in zip(self.spatial, self.patch, strict=True)]
        self.windows = [tuple(slice(c, c + size) for c, size in zip(corner, self.patch, strict=True))
                        for corner in itertools.product(*starts)]
        """Each patch's place in the volume, as slices of its spatial axes."""
        self.importance = gaussian_importance(self.patch, sigma_scale=sigma_scale)

    def __len__(self) -> int:
        return len(self.windows)

    def touched(self, changed: np.ndarray) -> np.ndarray:
        """Which patches hold at least one voxel of the boolean `changed` (the volume's spatial shape)."""
        return np.array([changed[window].any() for window in self.windows], bool)

    @functools.cached_property
    def weights(self) -> np.ndarray:
        """Sum of the importance maps over the patches covering each voxel: what blended outputs divide by."""
        weights = np.zeros(self.spatial, np.float32)
        for window in self.windows:
            weights[window] += self.importance
        return weights

    def add(self, blended: np.ndarray, index: int, values: np.ndarray) -> None:
        """Add patch `index`'s output `values` (K, *patch), weighted by importance, into `blended` (K, *spatial)."""
        blended[(slice(None), *self.windows[index])] += values * self.importance

    def blend(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """Blend one output per patch, each (K, *patch), into the volume's output (K, *spatial), float32."""
        blended = np.zeros((outputs[0].shape[0], *self.spatial), np.float32)
        for index, values in enumerate(outputs):
            self.add(blended, index, values)
        return blended / self.weights


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
    grid = PatchGrid(volume.shape[1:], patch, overlap=overlap, sigma_scale=sigma_scale)
    outputs: list[np.ndarray] = []
    for first in range(0, len(grid), batch_size):
        windows = grid.windows[first:first + batch_size]
        batch = np.stack([volume[(slice(None), *window)] for window in windows])
        result = np.asarray(predict(batch), np.float32)
        check_patch_output(result, batch.shape)
        outputs.extend(result)
    return grid.blend(outputs)


def check_patch_output(result: np.ndarray, patches: tuple[int, ...]) -> None:
    """Refuse outputs (n, K, *patch) that do not keep the patches' (n, C, *patch) number and spatial size."""
    if result.ndim != len(patches) or result.shape[0] != patches[0] or result.shape[2:] != tuple(patches[2:]):
        raise OnnxplainError(f"patch inference returned shape {result.shape} for patches shaped {patches}; "
                             "the model must keep the patch's spatial size")
