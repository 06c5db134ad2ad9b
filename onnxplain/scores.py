"""The score interface and the built-in scores: Hausdorff, segment distance, surface distance, Dice and class score.

A score compares each perturbed output with the reference and says how far it moved: 0 for an
output that matches the reference, more the further it is. The engine averages distances over the
masks that hid (HDM) or kept (RISE) each pixel; see `onnxplain.explain`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from scipy.ndimage import distance_transform_edt

from onnxplain.distances import distances_to_edge, distances_to_mask, edge_pixels, empty_distance, surfaces_to
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


STATISTICS = ("max", "p95", "mean")
DIRECTIONS = ("both", "reference", "output")


class HausdorffScore(Score):
    """Hausdorff distance between each output mask and the reference mask, and its robust kin.

    Every pixel (voxel) of one mask has a distance to the nearest pixel of the other (0 where they
    overlap). Distances are in the unit of the reference's spacing: millimetres for a NIfTI volume,
    pixels when it has none. `direction` says whose pixels count and `statistic` how their distances
    are summarised:

    - ``statistic='max', direction='both'`` (the defaults) is the Hausdorff distance of the 2019
      library: one false positive far from the segment counts as much as losing the segment;
    - ``direction='reference'`` counts only the reference's pixels, i.e. how far the segment's
      pixels are from what the output still segments (the segment lost or shrunk); ``'output'``
      counts only the output's pixels (false positives and how far they stray);
    - ``statistic='mean'`` is the mean of the pixel distances, ``'p95'`` their 95th percentile:
      neither is dominated by a single far pixel. They are taken over every pixel of the mask
      (0 where the masks overlap), not over surface pixels as the HD95 and average symmetric
      surface distance of medical imaging are: for those, see `SurfaceDistanceScore`.

    `margin` ignores output pixels further than that (in the spacing's unit) from the reference.
    Both masks are limited to the region of interest when the target has one. An output that
    segments nothing is `empty_distance` away (when the reference's pixels count).

    Parameters
    ----------
    statistic : {'max', 'p95', 'mean'}
        How the pixel distances are summarised.
    direction : {'both', 'reference', 'output'}
        Whose pixels' distances count.
    margin : float, optional
        Output pixels further than this from the reference, in the spacing's unit, are ignored
        (None: none is).
    """

    name = "hausdorff"

    def __init__(self, *, statistic: str = "max", direction: str = "both", margin: float | None = None):
        for parameter, value, choices in (("statistic", statistic, STATISTICS),
                                          ("direction", direction, DIRECTIONS)):
            if value not in choices:
                raise OnnxplainError(f"{parameter} must be one of {', '.join(choices)}; got {value!r}",
                                     parameters=(parameter,))
        if margin is not None and not margin > 0:
            raise OnnxplainError(f"margin must be a positive distance (in the spacing's unit, pixels by default), "
                                 f"got {margin}", parameters=("margin",))
        self.statistic = statistic
        self.direction = direction
        self.margin = margin
        self._cache: tuple[Reference, np.ndarray, np.ndarray] | None = None

    def _distance(self, outputs: ModelOutput, reference: Reference) -> np.ndarray:
        masks = reference.restrict(outputs.mask)
        spacing = reference.spacing_per_axis
        to_reference, target_points = self._prepared(reference)
        if self.margin is not None:
            masks = masks & (to_reference <= self.margin)
        if self.statistic == "max" and self.direction == "both":
            return self._hausdorff(masks, to_reference, target_points, spacing)
        distances = np.empty(len(masks))
        for i, mask in enumerate(masks):
            parts = []
            if self.direction != "reference":
                parts.append(to_reference[mask])  # each output pixel to the reference, from one distance map
            if self.direction != "output":
                if not mask.any():
                    distances[i] = empty_distance(mask.shape, spacing)
                    continue
                parts.append(distances_to_mask(mask, target_points, spacing))
            pooled = np.concatenate(parts)
            distances[i] = 0.0 if len(pooled) == 0 else _summary(pooled, self.statistic)
        return distances

    @staticmethod
    def _hausdorff(masks: np.ndarray, to_reference: np.ndarray, target_points: np.ndarray,
                   spacing: tuple[float, ...]) -> np.ndarray:
        """The symmetric Hausdorff distance, searching only the pixels that can be the farthest."""
        # From output to reference: the reference's distance map, computed once, serves every output.
        forward = np.where(masks, to_reference, 0.0).max(axis=tuple(range(1, masks.ndim)))
        # From reference to output: reference pixels an output missed, to that output's edge pixels.
        distances = np.empty(len(masks))
        for i, mask in enumerate(masks):
            if not mask.any():
                distances[i] = empty_distance(mask.shape, spacing)
                continue
            missed = target_points[~mask[tuple(target_points.T)]]
            farthest_missed = distances_to_edge(mask, missed, spacing).max() if len(missed) else 0.0
            distances[i] = max(forward[i], farthest_missed)
        return distances

    def _prepared(self, reference: Reference) -> tuple[np.ndarray, np.ndarray]:
        """The reference's distance map (in the spacing's unit) and pixel indices, computed once per reference."""
        if self._cache is None or self._cache[0] is not reference:
            target = reference.restricted_mask()
            to_target = distance_transform_edt(~target, sampling=reference.spacing_per_axis)
            self._cache = (reference, to_target, np.argwhere(target))
        return self._cache[1], self._cache[2]


class SegmentDistanceScore(HausdorffScore):
    """The mean distance from the reference's pixels to the nearest pixel the output still segments:
    how much of the segment a perturbation lost, and how far. HDM's default score.

    Distances are in the unit of the reference's spacing (millimetres for a NIfTI volume, pixels
    when it has none). It is `HausdorffScore` with ``statistic='mean'`` and
    ``direction='reference'`` (the parameters stay open). Unlike the Hausdorff distance, a false
    positive far from the segment does not count, so a map made with it answers "what made the
    model segment this", not "what would make it segment something elsewhere" (measured on real
    models: see the README).
    """

    name = "segment-distance"

    def __init__(self, *, statistic: str = "mean", direction: str = "reference", margin: float | None = None):
        super().__init__(statistic=statistic, direction=direction, margin=margin)


def _summary(distances: np.ndarray, statistic: str) -> float:
    if statistic == "max":
        return float(distances.max())
    if statistic == "p95":
        return float(np.percentile(distances, 95))
    return float(distances.mean())


SURFACE_STATISTICS = ("hd95", "assd", "max")
_SURFACE_SUMMARIES = {"hd95": "p95", "assd": "mean", "max": "max"}  # of the pooled surface distances


class SurfaceDistanceScore(Score):
    """Surface distances between each output mask and the reference: HD95, ASSD or the Hausdorff
    distance of medical image segmentation.

    Both masks' surfaces are their `edge_pixels` (medpy's surface: the mask minus its erosion with
    face connectivity, the volume's outside counted as background), and each surface voxel has a
    distance to the other surface (see `surface_distances`). Distances are in the unit of the
    reference's spacing: millimetres for a NIfTI volume, pixels when it has none.

    - ``'hd95'``: the 95th percentile of both directions' distances pooled, as medpy's
      ``metric.binary.hd95`` computes it (MONAI's ``compute_hausdorff_distance(percentile=95)``
      takes instead the larger of the two directions' 95th percentiles);
    - ``'assd'``: the average symmetric surface distance, the mean of the pooled distances
      (medpy's ``assd``);
    - ``'max'``: the Hausdorff distance between the surfaces (medpy's ``hd``). It equals the
      Hausdorff distance over all voxels (`HausdorffScore`) for most shapes, but not always: a
      hole in one mask adds surface the other mask's surface is far from.

    Both masks are limited to the region of interest when the target has one (the region's border
    then cuts a surface, as it would a ground truth cropped to it). An output that segments
    nothing is `empty_distance` away.

    Parameters
    ----------
    statistic : {'hd95', 'assd', 'max'}
        How the surface distances are summarised.
    """

    name = "surface-distance"

    def __init__(self, *, statistic: str = "hd95"):
        if statistic not in SURFACE_STATISTICS:
            raise OnnxplainError(f"statistic must be one of {', '.join(SURFACE_STATISTICS)}; got {statistic!r}",
                                 parameters=("statistic",))
        self.statistic = statistic
        self._cache: tuple[Reference, np.ndarray] | None = None

    def _distance(self, outputs: ModelOutput, reference: Reference) -> np.ndarray:
        spacing = reference.spacing_per_axis
        if self._cache is None or self._cache[0] is not reference:  # the reference's surface, once per reference
            target = reference.restricted_mask()
            self._cache = (reference, np.argwhere(edge_pixels(target, ndim=target.ndim)))
        surface = self._cache[1]
        distances = np.empty(len(outputs))
        for i, mask in enumerate(reference.restrict(outputs.mask)):
            if not mask.any():
                distances[i] = empty_distance(mask.shape, spacing)  # no surface: as far as an output can be
                continue
            distances[i] = _summary(np.concatenate(surfaces_to(mask, surface, spacing)),
                                    _SURFACE_SUMMARIES[self.statistic])
        return distances


class DiceScore(Score):
    """Dice distance, ``1 - 2|A ∩ B| / (|A| + |B|)``, between each output mask and the reference.

    Both masks are limited to the region of interest when the target has one.
    """

    name = "dice"

    def _distance(self, outputs: ModelOutput, reference: Reference) -> np.ndarray:
        return 1.0 - dice_coefficient(reference.restrict(outputs.mask), reference.restricted_mask())


def dice_coefficient(masks: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Dice coefficient of each mask in `masks` (n, *shape) with `reference` (*shape); 1 when both are empty.

    Counts run over every spatial axis, so images (H, W) and volumes (I, J, K) alike.

    Examples
    --------
    >>> a = np.zeros((1, 4, 4), bool); a[0, :2] = True
    >>> b = np.zeros((4, 4), bool); b[:1] = True
    >>> dice_coefficient(a, b)
    array([0.66666667])
    """
    masks = np.asarray(masks, dtype=bool)
    spatial = tuple(range(1, masks.ndim))
    overlap = np.count_nonzero(masks & reference, axis=spatial)
    total = np.count_nonzero(masks, axis=spatial) + np.count_nonzero(reference)
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
