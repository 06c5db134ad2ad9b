"""LIME (Ribeiro et al., 2016): a weighted linear model of the output over random superpixel coalitions."""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxplain.errors import OnnxplainError
from onnxplain.perturbation.aggregate import LinearSurrogate
from onnxplain.perturbation.masks import FeatureMasks
from onnxplain.perturbation.superpixels import SuperpixelMethod


class RandomCoalitions(FeatureMasks):
    """Mask 0 keeps every feature (LIME's first sample is the image itself); mask ``i`` keeps each
    feature with probability one half, drawn from ``default_rng([seed, i])``."""

    def __init__(self, features: np.ndarray, *, n_samples: int, seed: int):
        super().__init__(features)
        self.n_samples, self.seed = n_samples, seed

    def __len__(self) -> int:
        return self.n_samples

    def _coalitions(self, start: int, stop: int) -> np.ndarray:
        rows = [np.random.default_rng([self.seed, i]).random(self.n_features) < 0.5 for i in range(start, stop)]
        coalitions = np.array(rows).reshape(stop - start, self.n_features)
        if start == 0:
            coalitions[0] = True
        return coalitions


class Lime(SuperpixelMethod):
    """LIME: fit ``score ≈ w · z + b`` over `n_samples` random coalitions ``z`` of superpixels, weighted by
    an exponential kernel on the cosine distance to the whole image, with a ridge penalty; each
    superpixel gets its weight ``w``.

    Parameters
    ----------
    n_samples : int
        Coalitions evaluated (one forward pass's image each).
    kernel_width : float
        Width of the exponential kernel (0.25, LIME's image default).
    ridge : float
        Ridge penalty of the fit (1, LIME's default).
    **options
        segments, n_segments, fill, blur_sigma, channel, score, aggregator, seed: see
        `SuperpixelMethod` and `PerturbationMethod`.
    """

    name = "lime"
    default_score = "class-score"
    default_aggregator = "linear-surrogate"

    def __init__(self, *, n_samples: int = 1000, kernel_width: float = 0.25, ridge: float = 1.0, **options: Any):
        # LIME's own surrogate, unless another aggregator is asked for by name or object.
        if options.get("aggregator") in (None, "linear-surrogate"):
            options["aggregator"] = LinearSurrogate(kernel="exponential", kernel_width=kernel_width, ridge=ridge)
        super().__init__(**options)
        if n_samples < 2:
            raise OnnxplainError(f"n_samples must be at least 2, got {n_samples}", parameters=("n_samples",))
        self.n_samples = n_samples
        self.kernel_width = kernel_width
        self.ridge = ridge

    def mask_source(self, image: np.ndarray) -> RandomCoalitions:
        return RandomCoalitions(self.features(image), n_samples=self.n_samples, seed=self.seed)
