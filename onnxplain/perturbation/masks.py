"""Mask sources: the masks a perturbation method applies to one image, made lazily in batches."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from onnxplain.errors import OnnxplainError, PluginError


@dataclass(frozen=True)
class MaskBatch:
    """Masks `start` to `stop` of a source.

    Attributes
    ----------
    start : int
        Number of the first mask.
    masks : ndarray of float32, shape (n, *spatial)
        1 keeps a pixel, 0 replaces it entirely by the fill.
    coalitions : ndarray of bool, shape (n, features), or None
        For feature sources: which features each mask keeps.
    """

    start: int
    masks: np.ndarray
    coalitions: np.ndarray | None = None


class MaskSource(ABC):
    """The masks over one image.

    Contract of every source:

    - it is made for one image (it may look at its pixels) and its seed comes from its constructor;
    - ``len(source)`` masks; mask ``i`` depends only on the constructor arguments, the image and
      ``i``, so masks can be made in any batches, in any order, and made again identically;
    - `batch` returns float32 masks shaped ``(n, *spatial)`` in [0, 1], 1 meaning untouched.

    Subclasses implement `__len__` and `_masks` (or `_coalitions`, for `FeatureMasks`), and may
    name arrays of their own in `arrays` for the saved attribution.

    Parameters
    ----------
    spatial : tuple of int
        The image's spatial shape.
    """

    features: np.ndarray | None = None
    """For feature sources, the label of every pixel (0 to ``n_features - 1``); None otherwise."""
    grid: tuple[int, ...] | None = None
    """For masks placed on a regular grid of positions, the positions along each axis (mask ``i`` sits
    at ``numpy.unravel_index(i, grid)``), which coarse-to-fine refinement walks; None otherwise."""

    def __init__(self, spatial: tuple[int, ...]):
        self.spatial = tuple(int(side) for side in spatial)

    @abstractmethod
    def __len__(self) -> int:
        """Number of masks."""

    def batch(self, start: int, stop: int) -> MaskBatch:
        """Masks `start` to `stop` (excluded), checked against the contract."""
        total = len(self)
        if not 0 <= start <= stop <= total:
            raise OnnxplainError(f"mask range {start}:{stop} is outside 0:{total}")
        made = self._masks(start, stop)
        batch = made if isinstance(made, MaskBatch) else MaskBatch(start, made)
        expected = (stop - start, *self.spatial)
        if batch.masks.shape != expected:
            raise PluginError(f"{type(self).__name__} made masks shaped {batch.masks.shape}, expected {expected}")
        return MaskBatch(start, batch.masks.astype(np.float32, copy=False), batch.coalitions)

    @abstractmethod
    def _masks(self, start: int, stop: int) -> np.ndarray | MaskBatch:
        """Masks `start` to `stop` as the contract says."""

    def arrays(self) -> dict[str, np.ndarray]:
        """Arrays to save with the attribution, by name."""
        return {}


class FeatureMasks(MaskSource):
    """Masks that keep or hide whole features (superpixels, supervoxels, user regions).

    Subclasses implement `__len__` and `_coalitions`: which features each mask keeps.

    Parameters
    ----------
    features : ndarray of int, shape (*spatial)
        The feature of every pixel, numbered from 0 without gaps.
    """

    def __init__(self, features: np.ndarray):
        super().__init__(features.shape)
        self.features = np.asarray(features, dtype=np.intp)
        self.n_features = int(self.features.max()) + 1 if self.features.size else 0
        if self.features.size and (self.features.min() < 0 or not np.bincount(self.features.ravel()).all()):
            raise PluginError(f"{type(self).__name__} got feature labels that are not 0 to {self.n_features - 1} "
                              "without gaps; number them with numpy.unique(labels, return_inverse=True)")

    def _masks(self, start: int, stop: int) -> MaskBatch:
        coalitions = np.asarray(self._coalitions(start, stop), dtype=bool)
        if coalitions.shape != (stop - start, self.n_features):
            raise PluginError(
                f"{type(self).__name__} made coalitions shaped {coalitions.shape}, "
                f"expected {(stop - start, self.n_features)}"
            )
        return MaskBatch(start, coalitions.astype(np.float32)[:, self.features], coalitions)

    @abstractmethod
    def _coalitions(self, start: int, stop: int) -> np.ndarray:
        """Boolean (stop - start, n_features): the features each mask keeps."""

    def arrays(self) -> dict[str, np.ndarray]:
        return {"features": np.asarray(self.features, dtype=np.int32)}
