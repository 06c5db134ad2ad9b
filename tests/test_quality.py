"""On testnet, the built-in methods find the decider shape, which is never segmented.

These run the bundled model with each method's defaults, so they are the slowest tests (about
three minutes on two CPU cores).
"""

import numpy as np
import pytest

from onnxplain import data, explain
from onnxplain.model import OnnxModel
from onnxplain.registry import plugins


@pytest.fixture(scope="module")
def model():
    return OnnxModel(data.testnet_model_path(), device="cpu", batch_size=16)


@pytest.fixture(scope="module")
def samples():
    return [data.load_sample(i) for i in range(10)]


@pytest.mark.parametrize("method", ["hdm", "rise"])
def test_decider_gets_three_times_the_background_saliency_per_pixel(model, samples, method):
    decider_means, background_means = [], []
    for sample in samples:
        saliency = explain(model, sample.image, method=plugins.create("perturbation", method), seed=0).saliency
        shapes = sample.shapes
        background = ~(shapes["target"] | shapes["decider"] | shapes["distractor"])
        decider_means.append(saliency[shapes["decider"]].mean())
        background_means.append(saliency[background].mean())
    # Pooled over the ten samples, and for most samples one by one.
    assert np.mean(decider_means) >= 3 * np.mean(background_means)
    per_sample = np.array(decider_means) >= 3 * np.array(background_means)
    assert per_sample.sum() >= 8, list(zip(decider_means, background_means, strict=True))
