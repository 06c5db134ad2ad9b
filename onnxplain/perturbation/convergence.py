"""Stopping a sampling method when its map has converged: split-half reliability.

Masks of a sampling method (RISE) are independent draws, so the map from the even-numbered masks and
the map from the odd-numbered ones are two independent estimates of the same map. Their correlation
``r`` measures the noise: by the Spearman-Brown formula the reliability of the map of all ``n``
masks so far (the share of its variance that is not noise) is ``R = 2r / (1 + r)``, and the map
correlates ``sqrt(R)`` with the map infinitely many masks would give (``against='limit'``). The map
of the whole budget of ``N`` masks contains these ``n``; its reliability is
``R_N = k R / (1 + (k - 1) R)`` with ``k = N / n``, and the two maps correlate ``sqrt(R / R_N)``
(``against='budget'``): the noise they share does not separate them. The method stops at the first
checkpoint where the chosen correlation reaches the target. Checkpoints fall every `CHECK_EVERY`
masks whatever the batch size, so the same seed gives the same map.
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


AGAINST = ("budget", "limit")


def expected_correlation(half_correlation: float, *, budget_share: float = 0.0) -> float:
    """Expected correlation of the map of the masks so far with a map of more masks, from the halves' correlation.

    Parameters
    ----------
    half_correlation : float
        Correlation of the maps of the even- and the odd-numbered masks so far.
    budget_share : float
        The masks so far as a share of those of the other map (``n / N``), which includes them;
        0 for infinitely many masks.

    Examples
    --------
    >>> round(expected_correlation(0.9), 4)
    0.9733
    >>> round(expected_correlation(0.9, budget_share=0.25), 4)
    0.9801
    """
    if not half_correlation > 0:
        return 0.0
    reliability = 2 * half_correlation / (1 + half_correlation)
    if budget_share <= 0:
        return math.sqrt(reliability)
    k = 1 / budget_share  # sqrt(R / R_N) with R_N = k R / (1 + (k - 1) R)
    return math.sqrt((1 + (k - 1) * reliability) / k)


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
        Stop once the map's expected correlation with the map it is judged against reaches this.
    against : {'budget', 'limit'}
        Judge against the map of all the source's masks, or of infinitely many.
    """

    def __init__(self, aggregator: Aggregator, source: MaskSource, baseline_value: float, target: float, *,
                 against: str = "budget"):
        self.halves = [copy.copy(aggregator), copy.copy(aggregator)]
        for half in self.halves:
            half.begin(source, baseline_value)
        self.target = target
        self.against = against
        self.available = len(source)
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
        share = done / self.available if self.against == "budget" else 0.0
        expected = expected_correlation(half_correlation, budget_share=share)
        self.checks.append([done, round(half_correlation, 5), round(expected, 5)])
        return expected >= self.target

    def record(self, used: int) -> dict:
        """What the record keeps: the target, the masks used of those available, each check."""
        formula = ("sqrt(R/R_N), R = 2r/(1+r), R_N = kR/(1+(k-1)R), k = masks_available/masks"
                   if self.against == "budget" else "sqrt(R), R = 2r/(1+r)")
        return {"rule": "split-half", "target": self.target, "against": self.against, "masks_used": used,
                "masks_available": self.available, "checks": self.checks,
                "check": f"[masks, split-half correlation r, expected correlation with the {self.against}'s map "
                         f"{formula}]"}
