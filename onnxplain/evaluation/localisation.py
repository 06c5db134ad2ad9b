"""Localisation metrics against known regions: pointing game (Zhang et al., 2018) and relevance
mass (Arras et al., 2022). They need the context's masks, such as testnet's decider shape."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation

from onnxplain.errors import OnnxplainError
from onnxplain.evaluation.metric import EvaluationContext, Metric, MetricResult


def _masks(context: EvaluationContext, metric: str) -> dict[str, np.ndarray]:
    if not context.masks:
        raise OnnxplainError(
            f"{metric} needs a region to check against: give named masks, or a dataset with shapes/ folders",
            parameters=("masks",),
        )
    masks = {}
    for name, mask in context.masks.items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != context.image.shape[:2]:
            raise OnnxplainError(f"mask {name!r} is shaped {mask.shape} but the image is {context.image.shape[:2]}")
        if not mask.any():
            raise OnnxplainError(f"mask {name!r} is empty; {metric} needs at least one pixel in it")
        masks[name] = mask
    return masks


class PointingGame(Metric):
    """Pointing game: does the map's maximum fall on the region (within `tolerance` pixels)?

    1 for a hit, 0 for a miss, per named mask; averaged over images it is the hit rate. With
    several maxima of equal value, any one of them on the region is a hit. Higher is better.

    Parameters
    ----------
    tolerance : int
        Pixels the region is grown by before checking, as in the original game (15 px).
    """

    name = "pointing-game"

    def __init__(self, *, tolerance: int = 15):
        if tolerance < 0:
            raise OnnxplainError(f"tolerance must be non-negative, got {tolerance}")
        self.tolerance = tolerance

    def _evaluate(self, context: EvaluationContext, saliency: np.ndarray) -> MetricResult:
        peaks = saliency == saliency.max()
        values = {}
        for name, mask in _masks(context, self.name).items():
            grown = binary_dilation(mask, iterations=self.tolerance) if self.tolerance else mask
            values[f"pointing_game[{name}]"] = float((peaks & grown).any())
        return MetricResult(values=values)


class RelevanceMass(Metric):
    """Relevance mass: the share of positive saliency that falls on each region.

    ``relevance_mass[NAME]`` is the positive saliency on the region over all positive saliency
    (0 when the map has none); ``relevance_density[NAME]`` divides it by the region's share of the
    image, so 1 means the region gets as much per pixel as the image on average and 3 means three
    times as much. Higher is better.
    """

    name = "relevance-mass"

    def _evaluate(self, context: EvaluationContext, saliency: np.ndarray) -> MetricResult:
        positive = np.maximum(saliency, 0.0)
        total = positive.sum()
        values = {}
        for name, mask in _masks(context, self.name).items():
            mass = float(positive[mask].sum() / total) if total > 0 else 0.0
            values[f"relevance_mass[{name}]"] = mass
            values[f"relevance_density[{name}]"] = mass / (mask.sum() / mask.size)
        return MetricResult(values=values)
