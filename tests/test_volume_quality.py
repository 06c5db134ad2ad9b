"""On the 3-D testnet, HDM and RISE find the decider shape, which is never segmented.

The bundled 3-D U-Net segments its target as long as any part of the decider is left: hiding part of
a 16-voxel cube changes nothing (measured: a blurred or half-hidden decider keeps the whole
segment; a decider removed entirely leaves none). So the settings here hide whole deciders: spheres
of 28 voxels for HDM, and RISE grids of 4 cells per axis with few cells kept. These cost about a
minute on two CPU cores.
"""

import numpy as np
import pytest

from onnxplain import data
from onnxplain.model import OnnxModel
from onnxplain.registry import plugins
from onnxplain.testnet3d import make_volume

SETTINGS = {"hdm": {"circle_size": 28, "offset": 8}, "rise": {"n_masks": 500, "grid_size": 4, "p1": 0.05}}
SAMPLES = 5


@pytest.fixture(scope="module")
def model():
    return OnnxModel(data.testnet3d_model_path(), device="cpu", batch_size=16)


@pytest.mark.parametrize("method", list(SETTINGS))
def test_the_decider_gets_three_times_the_positive_relevance_of_the_background_per_voxel(model, method):
    explainer = plugins.create("method", method, **SETTINGS[method])
    decider, background = [], []
    for index in range(SAMPLES):
        sample = make_volume(7, index)  # a seed the model was not trained on
        relevance = np.maximum(explainer.attribute(model, sample.image).map, 0)
        shapes = sample.shapes
        decider.append(relevance[shapes["decider"]].mean())
        background.append(relevance[~(shapes["target"] | shapes["decider"] | shapes["distractor"])].mean())
    assert np.mean(decider) >= 3 * np.mean(background), (method, decider, background)
