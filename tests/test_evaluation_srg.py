"""The symmetric relevance gain, its substrates (blur, ROAD imputation) and its random-map baseline.

On the quadrant model (only the top-left quadrant decides) and on the bundled testnet model, a
correct map must have a clearly positive gap, an inverted one a negative gap, a random one about 0.
"""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from onnxplain import data
from onnxplain.errors import OnnxplainError
from onnxplain.evaluation import EvaluationContext
from onnxplain.evaluation.pixel_flipping import random_maps
from onnxplain.evaluation.srg import SymmetricRelevanceGain
from onnxplain.evaluation.substrate import Substrate, road_impute
from onnxplain.method import make_baseline
from onnxplain.model import OnnxModel
from onnxplain.targets import make_reference

QUADRANT = np.zeros((32, 32), bool)
QUADRANT[:16, :16] = True
CORRECT = QUADRANT.astype(float)
INVERTED = -CORRECT
RANDOM = np.random.default_rng(7).random((32, 32))


@pytest.fixture
def lit_quadrant(quadrant):
    """The quadrant model on a lit quadrant (0.4, threshold 0.25) over a dark image (0.1)."""
    model = OnnxModel(quadrant, device="cpu", batch_size=32)
    image = np.full((32, 32, 1), 0.1, np.float32)
    image[:16, :16] = 0.4
    reference = make_reference(model.predict(image[None]).mask[0])
    return EvaluationContext(model=model, image=image, reference=reference, seed=0, batch_size=32)


@pytest.fixture(scope="module")
def testnet_context():
    """Bundled sample 1 on the testnet model, with a map of its decider and target shapes."""
    model = OnnxModel(data.testnet_model_path(), device="cpu", batch_size=16)
    sample = data.load_sample(1)
    baseline = make_baseline(model, sample.image[:, :, None])
    context = EvaluationContext(model=model, image=baseline.image, reference=baseline.reference, seed=0,
                                batch_size=16)
    shapes = gaussian_filter((sample.shapes["decider"] | sample.shapes["target"]).astype(float), 3)
    return context, shapes


def gap(metric, context, saliency):
    return metric.evaluate(context, saliency).values["srg_gap"]


@pytest.mark.parametrize("substrate", ["black", "mean", "road", "blur"])
def test_correct_map_has_a_positive_gap_inverted_negative_random_none(lit_quadrant, substrate):
    # On a 32-pixel image, 5% of the side is a 1.6-pixel blur that leaves a quadrant's mean as it is:
    # a blur as wide as the image takes it away.
    metric = SymmetricRelevanceGain(steps=16, substrate=substrate, blur_fraction=0.5, n_random=4)
    correct, inverted, random = (gap(metric, lit_quadrant, m) for m in (CORRECT, INVERTED, RANDOM))
    assert correct > 0.1
    assert inverted < -0.1
    assert abs(random) < 0.25 * correct


def test_default_blur_on_testnet_separates_maps(testnet_context):
    context, shapes = testnet_context
    metric = SymmetricRelevanceGain(steps=10, n_random=2)
    correct, inverted = (metric.evaluate(context, m).values for m in (shapes, -shapes))
    random = gap(metric, context, np.random.default_rng(0).random((240, 240)))
    assert correct["srg_gap"] > 0.2 and inverted["srg_gap"] < -0.1 and abs(random) < 0.05
    assert correct["srg_lerf_auc"] > correct["srg_morf_auc"]


def test_curves_are_relative_to_the_unperturbed_score(lit_quadrant):
    result = SymmetricRelevanceGain(steps=8, substrate="mean", n_random=2).evaluate(lit_quadrant, CORRECT)
    (x, morf), (_, lerf) = result.curves["MoRF"], result.curves["LeRF"]
    assert x[0] == 0 and x[-1] == 1 and len(x) == 9
    assert morf[0] == lerf[0] == 1.0 and morf[-1] == lerf[-1]
    assert morf[4] < 0.5 < lerf[4]


def test_correct_map_beats_the_random_maps_and_a_random_map_does_not(lit_quadrant):
    metric = SymmetricRelevanceGain(steps=16, substrate="mean", n_random=8)
    correct, random = (metric.evaluate(lit_quadrant, m).values for m in (CORRECT, RANDOM))
    assert correct["srg_beats_random"] == 1.0 and random["srg_beats_random"] == 0.0
    assert abs(correct["srg_random_gap"]) < correct["srg_random_gap_std"]  # 0 in expectation
    assert correct["srg_random_gap"] == random["srg_random_gap"]  # one baseline per image


def test_the_random_baseline_is_computed_once_per_image(lit_quadrant, monkeypatch):
    metric = SymmetricRelevanceGain(steps=4, substrate="mean", n_random=2)
    calls = []
    original = metric.random_orders
    monkeypatch.setattr(metric, "random_orders", lambda context: calls.append(1) or original(context))
    for saliency in (CORRECT, INVERTED, RANDOM):
        metric.evaluate(lit_quadrant, saliency)
    other_image = EvaluationContext(**{**lit_quadrant.__dict__, "image": lit_quadrant.image * 0.9})
    metric.evaluate(other_image, CORRECT)
    assert len(calls) == 2


def test_same_seed_same_numbers_other_seed_other_baseline(lit_quadrant):
    metric = SymmetricRelevanceGain(steps=8, substrate="road", n_random=2)
    first = metric.evaluate(lit_quadrant, RANDOM).values
    assert SymmetricRelevanceGain(steps=8, substrate="road", n_random=2).evaluate(lit_quadrant, RANDOM).values == first
    reseeded = EvaluationContext(**{**lit_quadrant.__dict__, "seed": 1})
    assert metric.evaluate(reseeded, RANDOM).values["srg_random_gap"] != first["srg_random_gap"]


def test_smooth_random_maps_have_blobs_and_permutations_do_not():
    rng = np.random.default_rng(0)
    smooth = random_maps((64, 64), 4, kind="smooth", smoothing=0.05, rng=rng)
    scattered = random_maps((64, 64), 4, kind="permutation", smoothing=0.05, rng=rng)

    def neighbour_correlation(maps):
        return np.mean([np.corrcoef(m[:, :-1].ravel(), m[:, 1:].ravel())[0, 1] for m in maps])

    assert neighbour_correlation(smooth) > 0.8 and abs(neighbour_correlation(scattered)) < 0.1


def test_nothing_to_lose_is_an_error(quadrant):
    model = OnnxModel(quadrant, device="cpu")
    dark = np.full((32, 32, 1), 0.1, np.float32)  # the model segments nothing: Dice with the quadrant is 0
    context = EvaluationContext(model=model, image=dark, reference=make_reference(QUADRANT))
    with pytest.raises(OnnxplainError, match="unperturbed image scores 0 for the target"):
        SymmetricRelevanceGain(steps=4, score="dice").evaluate(context, CORRECT)


@pytest.mark.parametrize("bad, message", [({"random": "flat"}, "random must be one of smooth, permutation"),
                                          ({"n_random": 0}, "n_random must be at least 1"),
                                          ({"substrate": "grey"}, "substrate must be one of blur, black, mean, road"),
                                          ({"blur_fraction": 2.0}, r"blur_fraction must be in \(0, 1\]")])
def test_bad_settings(bad, message):
    with pytest.raises(OnnxplainError, match=message):
        SymmetricRelevanceGain(**bad)


# --- substrates -------------------------------------------------------------------------------------


def ramp(height=20, width=24):
    rows, columns = np.mgrid[0:height, 0:width]
    return np.stack([0.02 * rows + 0.01 * columns, 0.5 - 0.015 * columns], axis=-1)


def test_road_imputation_reproduces_a_linear_ramp():
    image = ramp()
    removed = np.zeros(image.shape[:2], bool)
    removed[5:9, 7:12] = removed[14, 3] = True  # a block and a lone pixel, away from the border
    exact = road_impute(image, removed, noise=0.0, rng=np.random.default_rng(0))
    np.testing.assert_allclose(exact, image, atol=1e-6)
    noisy = road_impute(image, removed, noise=0.01, rng=np.random.default_rng(0))
    error = (noisy - image)[removed]
    assert 0.005 < error.std() < 0.015 and np.abs(error).max() < 0.05
    np.testing.assert_array_equal(noisy[~removed], image[~removed].astype(np.float32))


def test_road_imputation_is_seeded_and_leaves_its_input_alone():
    image = ramp()
    before = image.copy()
    removed = np.random.default_rng(1).random(image.shape[:2]) < 0.5
    first = road_impute(image, removed, noise=0.01, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(first, road_impute(image, removed, noise=0.01, rng=np.random.default_rng(3)))
    np.testing.assert_array_equal(image, before)


def test_road_imputation_of_everything_is_the_mean():
    image = ramp()
    filled = road_impute(image, np.ones(image.shape[:2], bool), noise=0.0, rng=np.random.default_rng(0))
    np.testing.assert_allclose(filled, np.broadcast_to(image.mean(axis=(0, 1)), image.shape), atol=1e-6)


def test_blur_substrate_sigma_is_a_fraction_of_the_longer_side():
    image = np.random.default_rng(0).random((40, 80, 1)).astype(np.float32)
    removed = np.ones((1, 40, 80), bool)
    blurred = Substrate("blur", blur_fraction=0.1).remove(image, removed, rng=np.random.default_rng(0))[0]
    np.testing.assert_allclose(blurred, gaussian_filter(image, (8, 8, 0)), atol=1e-6)
