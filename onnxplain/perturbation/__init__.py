"""Perturbation methods: a mask source, a fill, a score and an aggregator, composed.

Each method is one module with one entry-point line in ``pyproject.toml``: `hdm`, `rise`,
`occlusion`, `ablation`, `lime`, `kernel_shap`, `shapley`.
"""

from onnxplain.perturbation.aggregate import Aggregator
from onnxplain.perturbation.engine import Collector, PerturbationMethod
from onnxplain.perturbation.fill import blend, fill_image
from onnxplain.perturbation.masks import FeatureMasks, MaskBatch, MaskSource
from onnxplain.perturbation.superpixels import SuperpixelMethod, superpixels

__all__ = [
    "Aggregator",
    "Collector",
    "FeatureMasks",
    "MaskBatch",
    "MaskSource",
    "PerturbationMethod",
    "SuperpixelMethod",
    "blend",
    "fill_image",
    "superpixels",
]
