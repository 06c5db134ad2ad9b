"""Stopping a sampling method when its map has converged: the reliability of its parts.

Masks of a sampling method (RISE) are independent draws, so the maps of the masks numbered 0, 4,
8..., of those numbered 1, 5, 9..., and so on (`PARTS` of them) are independent estimates of the same
map. Their mean pairwise correlation ``r`` measures the noise: by the Spearman-Brown formula the
reliability of the map of all ``n`` masks so far (the share of its variance that is not noise) is
``R = P r / (1 + (P - 1) r)`` for ``P`` parts, and the map correlates ``sqrt(R)`` with the map
infinitely many masks would give (``against='limit'``). The map of the whole budget of ``N`` masks
contains these ``n``; its reliability is ``R_N = k R / (1 + (k - 1) R)`` with ``k = N / n``, and the
two maps correlate ``sqrt(R / R_N)`` (``against='budget'``): the noise they share does not separate
them. The method stops at the first checkpoint where the chosen correlation reaches the target.
Four parts rather than two halves average six correlations instead of one, a steadier estimate
where a few rare masks carry much of the map (benchmarks/adaptive_sampling.py measures both).
Checkpoints fall every `CHECK_EVERY` masks whatever the batch size, so the same seed gives the same map.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import numpy as np

from onnxplain.perturbation.aggregate import Aggregator
from onnxplain.perturbation.masks import MaskBatch, MaskSource

CHECK_EVERY = 100  # masks between two convergence checks
PARTS = 4  # interleaved parts whose maps' agreement estimates the noise
FIRST_CHECK = 200  # too few masks per half make their correlation itself too noisy to trust


AGAINST = ("budget", "limit")


def expected_correlation(part_correlation: float, *, parts: int = 2, budget_share: float = 0.0) -> float:
    """Expected correlation of the map of the masks so far with a map of more masks, from its parts' agreement.

    Parameters
    ----------
    part_correlation : float
        Mean correlation between the maps of the interleaved parts of the masks so far.
    parts : int
        Number of parts (2: the even- and the odd-numbered masks).
    budget_share : float
        The masks so far as a share of those of the other map (``n / N``), which includes them;
        0 for infinitely many masks.

    Examples
    --------
    >>> round(expected_correlation(0.9), 4)
    0.9733
    >>> round(expected_correlation(0.9, budget_share=0.25), 4)
    0.9801
    >>> round(expected_correlation(9 / 11, parts=4), 4)  # four parts, each half a half's size, agreeing less
    0.9733
    """
    if not part_correlation > 0:
        return 0.0
    reliability = parts * part_correlation / (1 + (parts - 1) * part_correlation)
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


class SplitReliability:
    """Part-maps of one aggregation, mask ``i`` going to part ``i % parts``.

    Parameters
    ----------
    aggregator : Aggregator
        The method's aggregator (copied once per part).
    source : MaskSource
        The masks.
    baseline_value : float
        The unperturbed image's value.
    target : float
        Stop once the map's expected correlation with the map it is judged against reaches this.
    against : {'budget', 'limit'}
        Judge against the map of all the source's masks, or of infinitely many.
    parts : int
        Number of interleaved parts (`PARTS`; 2 are the even- and odd-numbered masks' halves).
    """

    def __init__(self, aggregator: Aggregator, source: MaskSource, baseline_value: float, target: float, *,
                 against: str = "budget", parts: int = PARTS):
        self.parts = [copy.copy(aggregator) for _ in range(parts)]
        for part in self.parts:
            part.begin(source, baseline_value)
        self.target = target
        self.against = against
        self.available = len(source)
        self.checks: list[list[float]] = []

    def add(self, batch: MaskBatch, values: np.ndarray) -> None:
        numbers = batch.start + np.arange(len(values))
        for index, part in enumerate(self.parts):
            chosen = np.flatnonzero(numbers % len(self.parts) == index)
            if len(chosen):
                coalitions = None if batch.coalitions is None else batch.coalitions[chosen]
                part.add(MaskBatch(batch.start + int(chosen[0]), batch.masks[chosen], coalitions), values[chosen])

    def converged(self, done: int) -> bool:
        """At a checkpoint: whether the map of the first `done` masks is close enough to the converged one."""
        if done < FIRST_CHECK or done % CHECK_EVERY:
            return False
        maps = np.stack([part.finish().ravel().astype(np.float64) for part in self.parts])
        if not np.all(maps.std(axis=1) > 0):
            return False
        pairs = np.asarray(np.corrcoef(maps))[np.triu_indices(len(maps), k=1)]
        part_correlation = float(pairs.mean())
        share = done / self.available if self.against == "budget" else 0.0
        expected = expected_correlation(part_correlation, parts=len(maps), budget_share=share)
        self.checks.append([done, round(part_correlation, 5), round(expected, 5)])
        return expected >= self.target

    def record(self, used: int) -> dict:
        """What the record keeps: the target, the masks used of those available, each check."""
        parts = len(self.parts)
        reliability = f"R = {parts}r/(1+{parts - 1}r)"
        formula = (f"sqrt(R/R_N), {reliability}, R_N = kR/(1+(k-1)R), k = masks_available/masks"
                   if self.against == "budget" else f"sqrt(R), {reliability}")
        return {"rule": "split-parts", "parts": parts, "target": self.target, "against": self.against,
                "masks_used": used, "masks_available": self.available, "checks": self.checks,
                "check": f"[masks, mean correlation r of the {parts} parts' maps, expected correlation with the "
                         f"{self.against}'s map {formula}]"}
