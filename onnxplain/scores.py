"""The score interface and the built-in scores: Hausdorff, segment distance, Dice and class score.

A score compares each perturbed output with the reference and says how far it moved: 0 for an
output that matches the reference, more the further it is. The engine averages distances over the
masks that hid (HDM) or kept (RISE) each pixel; see `onnxplain.explain`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from scipy.ndimage import distance_transform_edt
from scipy.spatial import cKDTree

from onnxplain.errors import OnnxplainError, PluginError
from onnxplain.outputs import ModelOutput
from onnxplain.registry import plugin_parameters
from onnxplain.targets import Reference


class Score(ABC):
    """Compares perturbed model outputs with a reference: the second half of a perturbation explainer.

    Contract of every score:

    - `calculate_distance` returns float64 distances shaped (n,), one per output, finite, 0 when the
      output matches the reference;
    - `check` rejects, with an `OnnxplainError`, a reference it cannot score (an empty one, say);
    - nothing here changes its inputs.

    Subclasses implement `_distance` and may override `check`. They keep each
    constructor argument as an attribute of the same name.
    """

    name: ClassVar[str] = ""

    def check(self, reference: Reference) -> None:
        """Raise `OnnxplainError` when `reference` cannot be scored."""
        if reference.roi is not None and not reference.roi.any():
            raise OnnxplainError("the region of interest is empty; give a target that covers at least one pixel",
                                 parameters=("target",))
        if not reference.restricted_mask().any():
            where = " inside the region of interest" if reference.roi is not None else ""
            raise OnnxplainError(
                f"the reference segment ({reference.source}) is empty{where}, so there is nothing to explain; "
                "give a non-empty segment, another class, or a target where the model segments something",
                parameters=("segment", "class_index", "target"),
            )

    def calculate_distance(self, outputs: ModelOutput, reference: Reference) -> np.ndarray:
        """Distances between each output and the reference.

        Parameters
        ----------
        outputs : ModelOutput
            Model outputs for n perturbed images.
        reference : Reference
            What the outputs are compared with.

        Returns
        -------
        ndarray of float64, shape (n,)
        """
        if outputs.mask.shape[1:] != reference.shape:
            raise OnnxplainError(
                f"outputs shaped {outputs.mask.shape[1:]} cannot be compared with a reference "
                f"shaped {reference.shape}"
            )
        distances = np.asarray(self._distance(outputs, reference), dtype=np.float64)
        if distances.shape != (len(outputs),) or not np.isfinite(distances).all():
            raise PluginError(
                f"score {self.name!r} returned {distances.shape} values (some not finite) for {len(outputs)} outputs; "
                "a score must return one finite distance per output"
            )
        return distances

    @abstractmethod
    def _distance(self, outputs: ModelOutput, reference: Reference) -> np.ndarray:
        """One distance per output, as described in the class contract."""

    def parameters(self) -> dict[str, Any]:
        """The constructor arguments, as recorded with each explanation."""
        return plugin_parameters(self)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.parameters().items())
        return f"{type(self).__name__}({arguments})"


def empty_distance(shape: tuple[int, ...]) -> float:
    """Hausdorff distance between an empty and a non-empty mask of `shape`: its diagonal.

    No two pixels of the image are further apart, so an output that lost the whole segment (or
    a reference that has none) counts as far as any output can be, and stays finite for averaging.
    """
    return float(np.hypot(shape[0] - 1, shape[1] - 1))


def hausdorff_distance(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """Symmetric Hausdorff distance between the pixel coordinates of two boolean masks.

    Parameters
    ----------
    mask_a, mask_b : ndarray of bool, shape (H, W)
        The two pixel sets.

    Returns
    -------
    float
        The largest distance, in pixels, from a pixel of either mask to the nearest pixel of the
        other; 0 when both are empty and `empty_distance` when only one is (the distance to an empty
        set is otherwise undefined).

    Examples
    --------
    >>> a = np.zeros((20, 20), bool); a[2:6, 2:6] = True
    >>> b = np.roll(a, 5, axis=0)  # the same square 5 px lower
    >>> hausdorff_distance(a, b)
    5.0
    """
    mask_a, mask_b = np.asarray(mask_a, dtype=bool), np.asarray(mask_b, dtype=bool)
    if mask_a.shape != mask_b.shape:
        raise OnnxplainError(f"masks shaped {mask_a.shape} and {mask_b.shape} cannot be compared")
    has_a, has_b = mask_a.any(), mask_b.any()
    if not (has_a and has_b):
        return 0.0 if has_a == has_b else empty_distance(mask_a.shape)
    return max(_directed(mask_a, mask_b), _directed(mask_b, mask_a))


def _directed(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """max over pixels of `mask_a` of the distance to the nearest pixel of `mask_b` (non-empty)."""
    outside = np.argwhere(mask_a & ~mask_b)
    if len(outside) == 0:
        return 0.0
    return _farthest_from(mask_b, outside)


def _farthest_from(mask: np.ndarray, points: np.ndarray) -> float:
    """The largest distance from `points` (k, 2) outside non-empty `mask` to their nearest pixel of it."""
    return float(cKDTree(np.argwhere(edge_pixels(mask))).query(points)[0].max())


def edge_pixels(mask: np.ndarray) -> np.ndarray:
    """Pixels of `mask` (..., H, W) with a 4-neighbour outside it or outside the image.

    The nearest pixel of a set to any pixel outside it lies on this edge (stepping from an interior
    pixel towards the query always gets closer), so nearest-pixel searches need only the edge.
    """
    interior = mask.copy()
    interior[..., 1:, :] &= mask[..., :-1, :]
    interior[..., :-1, :] &= mask[..., 1:, :]
    interior[..., :, 1:] &= mask[..., :, :-1]
    interior[..., :, :-1] &= mask[..., :, 1:]
    interior[..., [0, -1], :] = False
    interior[..., :, [0, -1]] = False
    return mask & ~interior


STATISTICS = ("max", "p95", "mean")
DIRECTIONS = ("both", "reference", "output")


class HausdorffScore(Score):
    """Hausdorff distance between each output mask and the reference mask, in pixels, and its robust kin.

    Every pixel of one mask has a distance to the nearest pixel of the other (0 where they overlap).
    `direction` says whose pixels count and `statistic` how their distances are summarised:

    - ``statistic='max', direction='both'`` (the defaults) is the Hausdorff distance of the 2019
      library: one false positive far from the segment counts as much as losing the segment;
    - ``direction='reference'`` counts only the reference's pixels, i.e. how far the segment's
      pixels are from what the output still segments (the segment lost or shrunk); ``'output'``
      counts only the output's pixels (false positives and how far they stray);
    - ``statistic='mean'`` is the mean of the pixel distances, ``'p95'`` their 95th percentile:
      neither is dominated by a single far pixel. They are taken over every pixel of the mask
      (0 where the masks overlap), not over border pixels as the surface-based HD95 and average
      surface distance of medical imaging are.

    `margin` ignores output pixels further than that many pixels from the reference. Both masks are
    limited to the region of interest when the target has one. An output that segments nothing is
    `empty_distance` away (when the reference's pixels count).

    Parameters
    ----------
    statistic : {'max', 'p95', 'mean'}
        How the pixel distances are summarised.
    direction : {'both', 'reference', 'output'}
        Whose pixels' distances count.
    margin : float, optional
        Output pixels further than this from the reference are ignored (None: none is).
    """

    name = "hausdorff"

    def __init__(self, *, statistic: str = "max", direction: str = "both", margin: float | None = None):
        for parameter, value, choices in (("statistic", statistic, STATISTICS),
                                          ("direction", direction, DIRECTIONS)):
            if value not in choices:
                raise OnnxplainError(f"{parameter} must be one of {', '.join(choices)}; got {value!r}",
                                     parameters=(parameter,))
        if margin is not None and not margin > 0:
            raise OnnxplainError(f"margin must be a positive number of pixels, got {margin}", parameters=("margin",))
        self.statistic = statistic
        self.direction = direction
        self.margin = margin
        self._cache: tuple[Reference, np.ndarray, np.ndarray] | None = None

    def _distance(self, outputs: ModelOutput, reference: Reference) -> np.ndarray:
        masks = reference.restrict(outputs.mask)
        to_reference, target_points = self._prepared(reference)
        if self.margin is not None:
            masks = masks & (to_reference <= self.margin)
        if self.statistic == "max" and self.direction == "both":
            return self._hausdorff(masks, to_reference, target_points)
        distances = np.empty(len(masks))
        for i, mask in enumerate(masks):
            parts = []
            if self.direction != "reference":
                parts.append(to_reference[mask])  # each output pixel to the reference, from one distance map
            if self.direction != "output":
                if not mask.any():
                    distances[i] = empty_distance(mask.shape)
                    continue
                parts.append(_to_mask(mask, target_points))
            pooled = np.concatenate(parts)
            distances[i] = 0.0 if len(pooled) == 0 else _summary(pooled, self.statistic)
        return distances

    @staticmethod
    def _hausdorff(masks: np.ndarray, to_reference: np.ndarray, target_points: np.ndarray) -> np.ndarray:
        """The symmetric Hausdorff distance, searching only the pixels that can be the farthest."""
        # From output to reference: the reference's distance map, computed once, serves every output.
        forward = np.where(masks, to_reference, 0.0).max(axis=(1, 2))
        # From reference to output: reference pixels an output missed, to that output's edge pixels.
        distances = np.empty(len(masks))
        for i, mask in enumerate(masks):
            if not mask.any():
                distances[i] = empty_distance(mask.shape)
                continue
            missed = target_points[~mask[target_points[:, 0], target_points[:, 1]]]
            distances[i] = max(forward[i], _farthest_from(mask, missed)) if len(missed) else forward[i]
        return distances

    def _prepared(self, reference: Reference) -> tuple[np.ndarray, np.ndarray]:
        """The reference's distance map and pixel coordinates, computed once per reference."""
        if self._cache is None or self._cache[0] is not reference:
            target = reference.restricted_mask()
            self._cache = (reference, distance_transform_edt(~target), np.argwhere(target))
        return self._cache[1], self._cache[2]


class SegmentDistanceScore(HausdorffScore):
    """The mean distance, in pixels, from the reference's pixels to the nearest pixel the output still
    segments: how much of the segment a perturbation lost, and how far. HDM's default score.

    It is `HausdorffScore` with ``statistic='mean'`` and ``direction='reference'`` (the parameters
    stay open). Unlike the Hausdorff distance, a false positive far from the segment does not count,
    so a map made with it answers "what made the model segment this", not "what would make it
    segment something elsewhere" (measured on real models: see the README).
    """

    name = "segment-distance"

    def __init__(self, *, statistic: str = "mean", direction: str = "reference", margin: float | None = None):
        super().__init__(statistic=statistic, direction=direction, margin=margin)


def _to_mask(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The distance from each of `points` (k, 2) to the nearest pixel of non-empty `mask` (0 inside it)."""
    distances = np.zeros(len(points))
    missed = ~mask[points[:, 0], points[:, 1]]
    if missed.any():
        distances[missed] = cKDTree(np.argwhere(edge_pixels(mask))).query(points[missed])[0]
    return distances


def _summary(distances: np.ndarray, statistic: str) -> float:
    if statistic == "max":
        return float(distances.max())
    if statistic == "p95":
        return float(np.percentile(distances, 95))
    return float(distances.mean())


class DiceScore(Score):
    """Dice distance, ``1 - 2|A ∩ B| / (|A| + |B|)``, between each output mask and the reference.

    Both masks are limited to the region of interest when the target has one.
    """

    name = "dice"

    def _distance(self, outputs: ModelOutput, reference: Reference) -> np.ndarray:
        return 1.0 - dice_coefficient(reference.restrict(outputs.mask), reference.restricted_mask())


def dice_coefficient(masks: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Dice coefficient of each mask in `masks` (n, H, W) with `reference` (H, W); 1 when both are empty.

    Examples
    --------
    >>> a = np.zeros((1, 4, 4), bool); a[0, :2] = True
    >>> b = np.zeros((4, 4), bool); b[:1] = True
    >>> dice_coefficient(a, b)
    array([0.66666667])
    """
    masks = np.asarray(masks, dtype=bool)
    overlap = np.count_nonzero(masks & reference, axis=(1, 2))
    total = np.count_nonzero(masks, axis=(1, 2)) + np.count_nonzero(reference)
    # Two empty masks agree perfectly.
    return np.where(total == 0, 1.0, 2.0 * overlap / np.maximum(total, 1))


class ClassScore(Score):
    """One minus the mean probability of the class over the region of interest.

    The region is the target's (a mask, a box, pixels) or, for a whole-class target, the pixels of
    the reference segment: the segmentation adapter of Humer et al., which averages the class
    probability over a region so that classification explainers apply.
    """

    name = "class-score"

    def check(self, reference: Reference) -> None:
        # Unlike the mask scores, an ROI where the model segments nothing is fine: its mean
        # probability is still defined (and is what a user asking "why not here?" wants).
        if not reference.region.any():
            super().check(reference)  # an empty ROI, or an empty segment: say which and how to fix it

    def _distance(self, outputs: ModelOutput, reference: Reference) -> np.ndarray:
        return 1.0 - outputs.probability_at(np.flatnonzero(reference.region)).mean(axis=1, dtype=np.float64)
