"""Shapley value sampling (Castro et al., 2009): marginal contributions along random permutations."""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxplain.errors import OnnxplainError
from onnxplain.perturbation.masks import FeatureMasks
from onnxplain.perturbation.superpixels import SuperpixelMethod


class PermutationCoalitions(FeatureMasks):
    """Mask 0 hides every feature; then, for each permutation, one mask per feature, keeping one more
    feature each time in the permutation's order. Permutation ``p`` is drawn from
    ``default_rng([seed, p])``; with `antithetic`, every odd permutation is the previous one reversed."""

    def __init__(self, features: np.ndarray, *, n_permutations: int, antithetic: bool, seed: int):
        super().__init__(features)
        self.n_permutations, self.antithetic, self.seed = n_permutations, antithetic, seed

    def __len__(self) -> int:
        return 1 + self.n_permutations * self.n_features

    def permutation(self, p: int) -> np.ndarray:
        """The order in which permutation `p` adds the features."""
        if self.antithetic and p % 2:
            return self.permutation(p - 1)[::-1]
        return np.random.default_rng([self.seed, p]).permutation(self.n_features)

    def _coalitions(self, start: int, stop: int) -> np.ndarray:
        coalitions = np.zeros((stop - start, self.n_features), bool)
        orders: dict[int, np.ndarray] = {}  # each permutation drawn once per batch, not once per mask
        for row, index in enumerate(range(max(start, 1), stop), start=max(start, 1) - start):
            p, step = divmod(index - 1, self.n_features)
            if p not in orders:
                orders[p] = self.permutation(p)
            coalitions[row, orders[p][: step + 1]] = True
        return coalitions


class ShapleySampling(SuperpixelMethod):
    """Shapley value sampling: each superpixel's mean marginal contribution to the score when added
    to the superpixels before it, over `n_permutations` random orders.

    With the class score, this is Captum's ``ShapleyValueSampling`` with the same feature mask, fill
    and number of permutations (in distribution: the permutations themselves differ).

    Parameters
    ----------
    n_permutations : int
        Random orders; each costs one forward pass's image per superpixel.
    antithetic : bool
        Pair every permutation with its reverse, which lowers the variance for the same cost.
    **options
        segments, n_segments, fill, blur_sigma, channel, score, aggregator, seed: see
        `SuperpixelMethod` and `PerturbationMethod`.
    """

    name = "shapley"
    default_score = "class-score"
    default_aggregator = "shapley"

    def __init__(self, *, n_permutations: int = 20, antithetic: bool = False, **options: Any):
        super().__init__(**options)
        if n_permutations < 1:
            raise OnnxplainError(f"n_permutations must be at least 1, got {n_permutations}",
                                 parameters=("n_permutations",))
        self.n_permutations = n_permutations
        self.antithetic = antithetic

    def mask_source(self, image: np.ndarray) -> PermutationCoalitions:
        return PermutationCoalitions(self.features(image), n_permutations=self.n_permutations,
                                     antithetic=self.antithetic, seed=self.seed)
