"""Localisation metrics against known regions: pointing game (Zhang et al., 2018) and relevance
mass (Arras et al., 2022). They need the context's masks, such as testnet's decider shape."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import distance_transform_edt

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
    """Pointing game: does the map's maximum fall on the region, or within `tolerance` pixels of it?

    1 for a hit, 0 for a miss, per named mask; averaged over images it is the hit rate. With
    several maxima of equal value, any one of them within reach is a hit. Higher is better.

    Parameters
    ----------
    tolerance : float
        Largest Euclidean distance, in pixels between pixel centres, from the region to a hit: the
        original game's 15 px disc (Zhang et al., 2018).

    Examples
    --------
    >>> from onnxplain.targets import make_reference
    >>> region = np.zeros((40, 40), bool)
    >>> region[0, 0] = True
    >>> saliency = np.zeros((40, 40))
    >>> saliency[10, 11] = 1.0  # 14.9 px from the region (21 px along the axes)
    >>> context = EvaluationContext(model=None, image=np.zeros((40, 40, 1)), reference=make_reference(region),
    ...                             masks={"corner": region})
    >>> PointingGame().evaluate(context, saliency).values
    {'pointing_game[corner]': 1.0}
    """

    name = "pointing-game"

    def __init__(self, *, tolerance: float = 15.0):
        if tolerance < 0:
            raise OnnxplainError(f"tolerance must be non-negative, got {tolerance}")
        self.tolerance = tolerance

    def _evaluate(self, context: EvaluationContext, saliency: np.ndarray) -> MetricResult:
        peaks = saliency == saliency.max()
        values = {}
        for name, mask in _masks(context, self.name).items():
            # Distance of every pixel to the nearest region pixel: a disc of `tolerance` around the region.
            reach = distance_transform_edt(~mask) <= self.tolerance
            values[f"pointing_game[{name}]"] = float((peaks & reach).any())
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
