"""Aggregators turn each mask's score into a map (entry-point group ``onnxplain.aggregators``).

Values arrive as the score's distances, ``d``: 0 when an output matches the reference, more the
further it moved. Every aggregator here returns a map that is positive where a pixel *supports*
the segmentation, so that maps of different methods read the same way.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from onnxplain.errors import OnnxplainError, PluginError
from onnxplain.perturbation.masks import MaskBatch, MaskSource
from onnxplain.registry import plugin_parameters

KERNELS = ("exponential", "shapley", "uniform")
_PRODUCT_ELEMENTS = 1 << 20  # mask values cast to float64 at a time (8 MB)
_ENDPOINT_WEIGHT = 1e6  # stands in for the infinite Shapley-kernel weight of the all-on and all-off coalitions


class Aggregator(ABC):
    """Turns per-mask values into a map, streaming: memory does not grow with the number of masks.

    Contract: `begin` starts a fresh aggregation for `source` (and forgets any earlier one); `add`
    takes the batches in mask order; `finish` returns a float32 map of the source's spatial shape,
    finite, positive where keeping a pixel keeps the output near the reference. Aggregators that
    read coalitions (`needs_features`) work only with feature sources.
    """

    name: ClassVar[str] = ""
    needs_features: ClassVar[bool] = False

    def check(self, source: MaskSource) -> None:
        """Raise `OnnxplainError` when this aggregator cannot aggregate the masks of `source`."""
        if self.needs_features and source.features is None:
            raise OnnxplainError(
                f"aggregator {self.name!r} fits one value per feature, but {type(source).__name__} makes "
                "pixel masks, not features; use it with a superpixel method (ablation, lime, kernel-shap, shapley)",
                parameters=("aggregator",),
            )

    def begin(self, source: MaskSource, baseline_value: float) -> None:
        """Start aggregating the masks of `source`; `baseline_value` is the unperturbed image's value."""
        self.check(source)
        self.source = source
        self.features = source.features if source.features is not None else np.zeros(source.spatial, np.intp)
        self.n_features = int(self.features.max()) + 1
        self.baseline_value = float(baseline_value)
        self._begin()

    @abstractmethod
    def _begin(self) -> None:
        """Reset the running sums."""

    @abstractmethod
    def add(self, batch: MaskBatch, values: np.ndarray) -> None:
        """Take one batch of masks and their values (float64, one per mask)."""

    @abstractmethod
    def finish(self) -> np.ndarray:
        """The map."""

    def arrays(self) -> dict[str, np.ndarray]:
        """Arrays of its own to save with the attribution (per-feature weights, say)."""
        return {}

    def parameters(self) -> dict[str, Any]:
        """The constructor arguments, as recorded."""
        return plugin_parameters(self)


def _coalitions(batch: MaskBatch) -> np.ndarray:
    if batch.coalitions is None:
        raise PluginError("a feature aggregator got masks without coalitions; its mask source must be FeatureMasks")
    return batch.coalitions


class _WeightedMean(Aggregator):
    """Each pixel's mean value over the masks, weighted per pixel by the mask (kept) or its complement (occluded)."""

    occluded: ClassVar[bool] = False

    def _begin(self) -> None:
        self._weighted = np.zeros(math.prod(self.source.spatial))
        self._weights = np.zeros_like(self._weighted)
        self._sum, self._count = 0.0, 0

    def add(self, batch: MaskBatch, values: np.ndarray) -> None:
        # One product gives both running sums: sum(v * m) and sum(m), in float64 so that the map
        # does not depend on how masks were batched. With occluded weights 1 - m they follow as
        # sum(v) - sum(v * m) and n - sum(m), so the complement is never made.
        masks = batch.masks.reshape(len(values), -1)
        weights = np.stack([values, np.ones_like(values)])
        kept_value, kept = np.empty(masks.shape[1]), np.empty(masks.shape[1])
        # A float64 copy of the masks only a few MB at a time, not of the whole batch (a large image).
        step = max(1, _PRODUCT_ELEMENTS // len(values))
        for start in range(0, masks.shape[1], step):
            kept_value[start:start + step], kept[start:start + step] = (
                weights @ masks[:, start:start + step].astype(np.float64))
        if self.occluded:
            kept_value, kept = values.sum() - kept_value, len(values) - kept
        self._weighted += kept_value
        self._weights += kept
        self._sum += float(values.sum())
        self._count += len(values)

    def _mean(self) -> np.ndarray:
        """Weighted mean per pixel; NaN where no mask weighed the pixel."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(self._weights > 0, self._weighted / self._weights, np.nan)
        return mean.reshape(self.source.spatial)


class OccludedMean(_WeightedMean):
    """Occlusion (HDM, sliding boxes, feature ablation): each pixel gets the mean distance over the
    masks that hid it, minus the unperturbed distance. Positive: hiding the pixel moves the output away.

    With the class score this is Captum's ``Occlusion`` / ``FeatureAblation`` attribution,
    ``f(x) - f(x occluded)`` averaged over the windows covering the pixel. 0 where no mask hid a pixel.
    """

    name = "occluded-mean"
    occluded = True

    def finish(self) -> np.ndarray:
        return np.nan_to_num(self._mean() - self.baseline_value).astype(np.float32)


class KeptMean(_WeightedMean):
    """RISE: each pixel gets the mean distance over all masks minus the mean distance over the masks
    that kept it. Positive: keeping the pixel holds the output in place. 0 where no mask kept a pixel."""

    name = "kept-mean"

    def finish(self) -> np.ndarray:
        overall = self._sum / max(self._count, 1)
        return np.nan_to_num(overall - self._mean()).astype(np.float32)


class LinearSurrogate(Aggregator):
    """A weighted linear model of the output over the features (LIME, KernelSHAP).

    Fits ``-d(z) ≈ w · z + b`` over the coalitions ``z`` (1 = feature kept) by weighted least squares
    with a ridge penalty on ``w`` (not on ``b``), streaming the normal equations, so memory is
    ``(features + 1)²`` whatever the number of samples. Each feature's pixels get its weight ``w``.

    Parameters
    ----------
    kernel : {'exponential', 'shapley', 'uniform'}
        Sample weights. ``'exponential'`` (LIME): ``exp(-D² / (2 kernel_width²))`` with ``D`` the cosine
        distance between ``z`` and the all-kept coalition. ``'shapley'`` (KernelSHAP, for coalitions
        drawn from the Shapley kernel's size distribution): 1, and a weight of 1e6 for the all-kept and
        all-hidden coalitions, which pins the fit to them as the KernelSHAP paper's infinite weights do.
        ``'uniform'``: 1.
    kernel_width : float
        Width of the exponential kernel.
    ridge : float
        Ridge penalty on the feature weights; 0 for ordinary least squares.
    """

    name = "linear-surrogate"
    needs_features = True

    def __init__(self, *, kernel: str = "exponential", kernel_width: float = 0.25, ridge: float = 1.0):
        if kernel not in KERNELS:
            raise OnnxplainError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}", parameters=("kernel",))
        if kernel_width <= 0:
            raise OnnxplainError(f"kernel_width must be positive, got {kernel_width}", parameters=("kernel_width",))
        if ridge < 0:
            raise OnnxplainError(f"ridge must be non-negative, got {ridge}", parameters=("ridge",))
        self.kernel = kernel
        self.kernel_width = kernel_width
        self.ridge = ridge

    def _begin(self) -> None:
        size = self.n_features + 1
        self._gram = np.zeros((size, size))
        self._moment = np.zeros(size)
        self._weights: np.ndarray | None = None

    def sample_weights(self, coalitions: np.ndarray) -> np.ndarray:
        """The kernel's weight of each coalition (rows of booleans)."""
        kept = coalitions.sum(axis=1)
        features = coalitions.shape[1]
        if self.kernel == "uniform":
            return np.ones(len(coalitions))
        if self.kernel == "shapley":
            return np.where((kept == 0) | (kept == features), _ENDPOINT_WEIGHT, 1.0)
        distance = 1.0 - np.sqrt(kept / features)  # cosine distance to the all-kept coalition
        return np.exp(-(distance**2) / (2 * self.kernel_width**2))

    def add(self, batch: MaskBatch, values: np.ndarray) -> None:
        coalitions = _coalitions(batch)
        design = np.hstack([coalitions.astype(np.float64), np.ones((len(values), 1))])
        weighted = design * self.sample_weights(coalitions)[:, None]
        self._gram += weighted.T @ design
        self._moment += weighted.T @ -values

    def finish(self) -> np.ndarray:
        penalty = np.full(len(self._moment), self.ridge)
        penalty[-1] = 0.0  # the intercept is not penalised
        # lstsq, not solve: a feature that never varied leaves the system singular; it gets 0 weight.
        solution = np.linalg.lstsq(self._gram + np.diag(penalty), self._moment, rcond=None)[0]
        self._weights = solution[:-1]
        return self._weights[self.features].astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        return {} if self._weights is None else {"feature_weights": self._weights}


class ShapleyEstimate(Aggregator):
    """Shapley values from marginal contributions along permutations (Shapley value sampling).

    Coalitions arrive in order: the empty one, then for each permutation one feature more per mask.
    Whenever a mask keeps exactly one feature more than the mask before it (or exactly one feature,
    after the empty coalition), the difference of ``-d`` is that feature's marginal contribution;
    each feature gets the mean of its contributions, the Monte-Carlo estimate of its Shapley value.
    """

    name = "shapley"
    needs_features = True

    def _begin(self) -> None:
        self._sums = np.zeros(self.n_features)
        self._counts = np.zeros(self.n_features, np.int64)
        self._empty: float | None = None
        self._previous: tuple[np.ndarray, int, float] | None = None  # coalition, its size, its value
        self._values: np.ndarray | None = None

    def add(self, batch: MaskBatch, values: np.ndarray) -> None:
        for coalition, value in zip(_coalitions(batch), -values, strict=True):
            size = int(coalition.sum())
            if size == 0:
                self._empty = value
            elif self._previous is not None and size == self._previous[1] + 1 and \
                    (coalition >= self._previous[0]).all():
                self._credit(coalition & ~self._previous[0], value - self._previous[2])
            elif size == 1 and self._empty is not None:
                self._credit(coalition, value - self._empty)
            self._previous = (coalition, size, value)

    def _credit(self, added: np.ndarray, contribution: float) -> None:
        feature = int(np.flatnonzero(added)[0])
        self._sums[feature] += contribution
        self._counts[feature] += 1

    def finish(self) -> np.ndarray:
        if not self._counts.any():
            # No mask added one feature to the one before it: these are not permutation masks.
            raise OnnxplainError(
                f"aggregator 'shapley' found no marginal contributions in the masks of {type(self.source).__name__}; "
                "it needs masks that add one feature at a time (the shapley method's); use linear-surrogate or "
                "occluded-mean here",
                parameters=("aggregator",),
            )
        self._values = np.divide(self._sums, self._counts, out=np.zeros_like(self._sums), where=self._counts > 0)
        return self._values[self.features].astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        return {} if self._values is None else {"feature_weights": self._values}
