"""KernelSHAP (Lundberg and Lee, 2017): Shapley values as a weighted linear fit over superpixel coalitions."""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxplain.errors import OnnxplainError
from onnxplain.perturbation.aggregate import LinearSurrogate
from onnxplain.perturbation.masks import FeatureMasks
from onnxplain.perturbation.superpixels import SuperpixelMethod


class ShapleyKernelCoalitions(FeatureMasks):
    """Mask 0 hides every feature, mask 1 keeps every one; then pairs: mask ``2 + 2j`` keeps ``k``
    features drawn uniformly, ``k`` drawn with probability proportional to ``(F - 1) / (k (F - k))``
    (the Shapley kernel's weight of all coalitions of size ``k``), and mask ``3 + 2j`` is its
    complement. Pair ``j`` is drawn from ``default_rng([seed, j])``."""

    def __init__(self, features: np.ndarray, *, n_samples: int, seed: int):
        super().__init__(features)
        self.n_samples, self.seed = n_samples, seed
        sizes = np.arange(1, self.n_features)
        weights = (self.n_features - 1) / (sizes * (self.n_features - sizes))
        self._sizes, self._probabilities = sizes, weights / weights.sum() if len(sizes) else weights

    def __len__(self) -> int:
        # With one feature there are only the two ends; sampling has nothing between them to draw.
        return 2 if self.n_features < 2 else self.n_samples

    def _coalitions(self, start: int, stop: int) -> np.ndarray:
        coalitions = np.zeros((stop - start, self.n_features), bool)
        drawn: dict[int, np.ndarray] = {}  # each pair drawn once per batch, for both its masks
        for row, index in enumerate(range(start, stop)):
            if index < 2:
                coalitions[row] = index == 1
                continue
            pair, complement = divmod(index - 2, 2)
            if pair not in drawn:
                drawn[pair] = self._pair(pair)
            coalitions[row] = ~drawn[pair] if complement else drawn[pair]
        return coalitions

    def _pair(self, pair: int) -> np.ndarray:
        """The first coalition of pair `pair`; its complement is the second."""
        rng = np.random.default_rng([self.seed, pair])
        size = rng.choice(self._sizes, p=self._probabilities)
        kept = np.zeros(self.n_features, bool)
        kept[rng.choice(self.n_features, size=size, replace=False)] = True
        return kept


class KernelShap(SuperpixelMethod):
    """KernelSHAP: Shapley values of the superpixels, by least squares over coalitions sampled from the
    Shapley kernel, in complementary pairs, with the whole image and the fully hidden one pinned.

    The values add up to the score of the whole image minus that of the fully hidden one.

    Parameters
    ----------
    n_samples : int
        Coalitions evaluated, the two ends included.
    **options
        segments, n_segments, fill, blur_sigma, channel, score, aggregator, seed: see
        `SuperpixelMethod` and `PerturbationMethod`.
    """

    name = "kernel-shap"
    default_score = "class-score"
    default_aggregator = "linear-surrogate"

    def __init__(self, *, n_samples: int = 1000, **options: Any):
        # The Shapley-kernel fit, unless another aggregator is asked for by name or object.
        if options.get("aggregator") in (None, "linear-surrogate"):
            options["aggregator"] = LinearSurrogate(kernel="shapley", ridge=0.0)
        super().__init__(**options)
        if n_samples < 3:
            raise OnnxplainError(f"n_samples must be at least 3, got {n_samples}", parameters=("n_samples",))
        self.n_samples = n_samples

    def mask_source(self, image: np.ndarray) -> ShapleyKernelCoalitions:
        return ShapleyKernelCoalitions(self.features(image), n_samples=self.n_samples, seed=self.seed)
