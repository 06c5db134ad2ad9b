"""On testnet, the built-in methods find the decider shape, which is never segmented, and their maps
are faithful to the model. These run the bundled model on ten samples with each method's defaults
(fewer samples for LIME, KernelSHAP and Shapley sampling, whose defaults cost 1000 images each), so
they are the slowest tests (about four minutes on two CPU cores)."""

import numpy as np
import pytest

from onnxplain import data
from onnxplain.evaluation import EvaluationContext
from onnxplain.evaluation.faithfulness import Deletion
from onnxplain.evaluation.localisation import RelevanceMass
from onnxplain.model import OnnxModel
from onnxplain.registry import plugins

SETTINGS = {
    "hdm": {}, "rise": {}, "occlusion": {}, "ablation": {},
    "lime": {"n_samples": 500}, "kernel-shap": {"n_samples": 500}, "shapley": {"n_permutations": 10},
}


@pytest.fixture(scope="module")
def model():
    return OnnxModel(data.testnet_model_path(), device="cpu", batch_size=16)


@pytest.fixture(scope="module")
def samples():
    return [data.load_sample(i) for i in range(10)]


def regions(sample):
    shapes = dict(sample.shapes)
    shapes["background"] = ~(shapes["target"] | shapes["decider"] | shapes["distractor"])
    return shapes


@pytest.fixture(scope="module", params=list(SETTINGS))
def explained(request, model, samples):
    """Each sample explained by one method: (sample, attribution) pairs."""
    method = plugins.create("method", request.param, **SETTINGS[request.param])
    return request.param, [(sample, method.attribute(model, sample.image)) for sample in samples]


def test_decider_gets_three_times_the_positive_relevance_of_the_background_per_pixel(explained):
    method, pairs = explained
    decider = np.mean([np.maximum(e.map, 0)[regions(s)["decider"]].mean() for s, e in pairs])
    background = np.mean([np.maximum(e.map, 0)[regions(s)["background"]].mean() for s, e in pairs])
    assert decider >= 3 * background, (method, decider, background)


def test_decider_gets_three_times_the_background_saliency_per_pixel(explained):
    method, pairs = explained
    decider = np.array([e.saliency[regions(s)["decider"]].mean() for s, e in pairs])
    background = np.array([e.saliency[regions(s)["background"]].mean() for s, e in pairs])
    # Pooled over the ten samples, and for most samples one by one.
    assert decider.mean() >= 3 * background.mean(), method
    assert (decider >= 3 * background).sum() >= 8, (method, decider, background)


def test_decider_gets_more_relevance_mass_per_pixel_than_the_background(explained, model):
    method, pairs = explained
    densities = []
    for sample, explanation in pairs:
        context = EvaluationContext.from_attribution(explanation, model, masks=regions(sample))
        values = RelevanceMass().evaluate(context, explanation.saliency).values
        densities.append((values["relevance_density[decider]"], values["relevance_density[background]"]))
    decider, background = np.array(densities).T
    assert decider.mean() > background.mean(), method
    assert (decider > background).sum() >= 8, (method, densities)


def test_deletion_beats_a_random_order(explained, model):
    method, pairs = explained
    aucs = []
    for _, explanation in pairs:
        context = EvaluationContext.from_attribution(explanation, model)
        values = Deletion(steps=20).evaluate(context, explanation.saliency)
        aucs.append((values.values["deletion_auc"], values.values["deletion_random_auc"]))
    saliency_order, random_order = np.array(aucs).T
    # On average; not for every sample: RISE's smooth blobs are mostly black background, whose
    # deletion changes nothing, and it wins on 76 % of the 50 samples of the faithfulness benchmark.
    assert saliency_order.mean() < random_order.mean(), (method, aucs)
