"""The symmetric relevance gain (Blücher et al., 2024, "Decoupling pixel flipping and occlusion
strategy for consistent XAI benchmarks"): most relevant first against least relevant first."""

from __future__ import annotations

import numpy as np
from scipy.integrate import trapezoid

from onnxplain.errors import OnnxplainError
from onnxplain.evaluation.metric import EvaluationContext, MetricResult
from onnxplain.evaluation.pixel_flipping import FlipMetric, most_relevant_first

BEATS_RANDOM_SPREADS = 1.0
"""A gap beats the random maps when it exceeds their mean gap by this many standard deviations:
more than about 84% of random maps, if their gaps are roughly normal. Smooth random maps that fall
on what the model looks at reach large gaps by chance, so the spread, not the mean (0 in
expectation), is what a map must clear."""


class SymmetricRelevanceGain(FlipMetric):
    """SRG: the area between the least-relevant-first and the most-relevant-first deletion curves.

    Pixels are removed onto the substrate in the map's order, most relevant first (MoRF), and in
    the reverse order, least relevant first (LeRF). Each curve is the score relative to the
    unperturbed image's, ``score(x with fraction t removed) / score(x)``, against the fraction
    ``t`` removed, from 0 to 1; both start at 1 and end at the fully removed image. Then::

        srg_gap = AUC(LeRF) - AUC(MoRF)

    (trapezoidal areas over [0, 1]). A faithful map keeps the score while its unimportant pixels
    go and loses it as soon as its important ones do: a clearly positive gap. An inverted map
    gives a negative gap and a random one a gap near 0. Removal that takes the image out of the
    model's data pulls both curves down alike, and Blücher et al. find that the gap ranks maps
    consistently across occlusion strategies where either curve alone does not. The substrate
    still matters where what it puts in is itself informative: on some testnet images, whose
    decision rests on shape outlines, the blur gives a map of the deciding shapes a negative gap
    where ROAD imputation gives it a clearly positive one. Higher is better.

    The same gap for `n_random` random maps (same seed: the same maps for every method) is the
    baseline: ``srg_random_gap`` (mean) and ``srg_random_gap_std`` (spread); ``srg_beats_random`` is
    1 when the map's gap exceeds the random mean by more than one spread, else 0 (averaged over
    images, the share of images where it does). Costs ``2 * (steps - 1) + 2`` forward passes per
    map, and ``2 * (steps - 1) * n_random`` once per image for the baseline. The parameters are
    those of `FlipMetric`.

    Examples
    --------
    >>> metric = SymmetricRelevanceGain(steps=20, substrate="road")
    >>> metric.parameters()["substrate"], metric.higher_is_better
    ('road', True)
    """

    name = "srg"
    higher_is_better = True

    def _evaluate(self, context: EvaluationContext, saliency: np.ndarray) -> MetricResult:
        fractions = self.fractions()
        morf, lerf = self._curves(context, most_relevant_first(saliency, np.random.default_rng([context.seed, 1])))
        random_morf, random_lerf = self.baseline(context, lambda: self._random_curves(context))
        gap = float(trapezoid(lerf, fractions) - trapezoid(morf, fractions))
        random_gaps = trapezoid(random_lerf, fractions, axis=1) - trapezoid(random_morf, fractions, axis=1)
        threshold = random_gaps.mean() + BEATS_RANDOM_SPREADS * random_gaps.std()
        return MetricResult(
            values={
                "srg_morf_auc": float(trapezoid(morf, fractions)),
                "srg_lerf_auc": float(trapezoid(lerf, fractions)),
                "srg_gap": gap,
                "srg_random_gap": float(random_gaps.mean()),
                "srg_random_gap_std": float(random_gaps.std()),
                "srg_beats_random": float(gap > threshold),
            },
            curves={
                "MoRF": (fractions, morf),
                "LeRF": (fractions, lerf),
                f"random maps MoRF (mean of {self.n_random})": (fractions, random_morf.mean(axis=0)),
                f"random maps LeRF (mean of {self.n_random})": (fractions, random_lerf.mean(axis=0)),
            },
        )

    def _curves(self, context: EvaluationContext, order: np.ndarray, *, stream: int = 0) -> tuple[np.ndarray, ...]:
        """Normalised MoRF and LeRF curves of one order; the shared end points are computed once."""
        unperturbed, removed = self._end_points(context)
        inner = self.fractions()[1:-1]
        morf = self.curve(context, order, inner, stream=2 * stream + 1)
        lerf = self.curve(context, order[::-1], inner, stream=2 * stream + 2)
        return tuple(np.concatenate([[unperturbed], curve, [removed]]) / unperturbed for curve in (morf, lerf))

    def _end_points(self, context: EvaluationContext) -> tuple[float, float]:
        """The score of the unperturbed image and of the fully removed one."""
        ends = self.curve(context, np.arange(context.image.shape[0] * context.image.shape[1]),
                          np.array([0.0, 1.0]), stream=0)
        if not ends[0] > 0:
            # The curves are relative to this score: with none to lose, there is nothing to measure.
            raise OnnxplainError(
                f"the unperturbed image scores {ends[0]:.3g} for the target, so the srg curves, relative to it, "
                "are undefined; explain a class or region that the model finds on this image"
            )
        return float(ends[0]), float(ends[1])

    def _random_curves(self, context: EvaluationContext) -> tuple[np.ndarray, np.ndarray]:
        orders = self.random_orders(context)
        pairs = [self._curves(context, order, stream=1 + draw) for draw, order in enumerate(orders)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
