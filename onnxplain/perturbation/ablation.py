"""Feature ablation: hide one superpixel at a time."""

from __future__ import annotations

import numpy as np

from onnxplain.perturbation.masks import FeatureMasks
from onnxplain.perturbation.superpixels import SuperpixelMethod


class OneAtATime(FeatureMasks):
    """Mask ``k`` hides feature ``k`` and keeps every other one."""

    def __len__(self) -> int:
        return self.n_features

    def _coalitions(self, start: int, stop: int) -> np.ndarray:
        return np.arange(start, stop)[:, None] != np.arange(self.n_features)


class Ablation(SuperpixelMethod):
    """Feature ablation: each superpixel's value is how far the output moves when it alone is hidden.

    With the class score, this is Captum's ``FeatureAblation`` with the same feature mask and fill.
    Parameters: see `SuperpixelMethod`.
    """

    name = "ablation"
    default_score = "class-score"
    default_aggregator = "occluded-mean"

    def mask_source(self, image: np.ndarray) -> OneAtATime:
        return OneAtATime(self.features(image))
