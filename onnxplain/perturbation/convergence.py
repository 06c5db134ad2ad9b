"""Stopping a sampling method when its map has converged: split-half reliability.

Masks of a sampling method (RISE) are independent draws, so the map from the even-numbered masks and
the map from the odd-numbered ones are two independent estimates of the same map. Their correlation
``r`` measures the noise; by the Spearman-Brown formula the map from all the masks so far correlates
``sqrt(2r / (1 + r))`` with the map infinitely many masks would give (the reliability index). The
method stops at the first checkpoint where that reaches the target. Checkpoints fall every
`CHECK_EVERY` masks whatever the batch size, so the same seed gives the same map.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import numpy as np

from onnxplain.perturbation.aggregate import Aggregator
from onnxplain.perturbation.masks import MaskBatch, MaskSource

CHECK_EVERY = 100  # masks between two convergence checks
FIRST_CHECK = 200  # too few masks per half make their correlation itself too noisy to trust


def expected_correlation(half_correlation: float) -> float:
    """Correlation of the whole map with the converged one, from the two halves' correlation.

    Examples
    --------
    >>> round(expected_correlation(0.9), 4)
    0.9733
    """
    if not half_correlation > 0:
        return 0.0
    return math.sqrt(2 * half_correlation / (1 + half_correlation))


def checkpoint_batches(total: int, batch_size: int, every: int | None) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` ranges of at most `batch_size` that never cross a multiple of `every`.

    Examples
    --------
    >>> list(checkpoint_batches(250, 64, 100))
    [(0, 64), (64, 100), (100, 164), (164, 200), (200, 250)]
    """
    step = every or total
    for block in range(0, total, step):
        end = min(block + step, total)
        for start in range(block, end, batch_size):
            yield start, min(start + batch_size, end)


class SplitHalf:
    """Two half-maps of one aggregation, from the even- and the odd-numbered masks.

    Parameters
    ----------
    aggregator : Aggregator
        The method's aggregator (copied twice).
    source : MaskSource
        The masks.
    baseline_value : float
        The unperturbed image's value.
    target : float
        Stop once the map's expected correlation with the converged map reaches this.
    """

    def __init__(self, aggregator: Aggregator, source: MaskSource, baseline_value: float, target: float):
        self.halves = [copy.copy(aggregator), copy.copy(aggregator)]
        for half in self.halves:
            half.begin(source, baseline_value)
        self.target = target
        self.checks: list[list[float]] = []

    def add(self, batch: MaskBatch, values: np.ndarray) -> None:
        for parity, half in enumerate(self.halves):
            chosen = np.flatnonzero((batch.start + np.arange(len(values))) % 2 == parity)
            if len(chosen):
                coalitions = None if batch.coalitions is None else batch.coalitions[chosen]
                half.add(MaskBatch(batch.start + int(chosen[0]), batch.masks[chosen], coalitions), values[chosen])

    def converged(self, done: int) -> bool:
        """At a checkpoint: whether the map of the first `done` masks is close enough to the converged one."""
        if done < FIRST_CHECK or done % CHECK_EVERY:
            return False
        first, second = (half.finish().ravel().astype(np.float64) for half in self.halves)
        if first.std() == 0 or second.std() == 0:
            return False
        half_correlation = float(np.corrcoef(first, second)[0, 1])
        expected = expected_correlation(half_correlation)
        self.checks.append([done, round(half_correlation, 5), round(expected, 5)])
        return expected >= self.target

    def record(self, used: int, available: int) -> dict:
        """What the record keeps: the target, the masks used of those available, each check."""
        return {"target": self.target, "masks_used": used, "masks_available": available,
                "checks": self.checks, "check": "split-half correlation r, expected sqrt(2r/(1+r))"}
