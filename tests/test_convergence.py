"""Adaptive sampling: RISE stops when the agreement of its parts says the map has converged."""

import numpy as np
import pytest

import onnxplain
from onnxplain import data
from onnxplain.errors import OnnxplainError
from onnxplain.model import OnnxModel
from onnxplain.perturbation.convergence import CHECK_EVERY, FIRST_CHECK, expected_correlation


@pytest.fixture(scope="module")
def testnet():
    model = OnnxModel(data.testnet_model_path())
    return model, model.check_image(data.load_sample(0).image)


def test_adaptive_rise_stops_early_close_to_the_whole_budget(testnet):
    model, image = testnet
    budget = 2500
    whole = onnxplain.create_method("rise", n_masks=budget).attribute(model, image)
    adaptive = onnxplain.create_method("rise", n_masks=budget, converge=0.97).attribute(model, image)
    record = adaptive.record["convergence"]
    used = record["masks_used"]
    assert FIRST_CHECK <= used < budget and used % CHECK_EVERY == 0 and len(adaptive.values) == used
    assert record["checks"][-1][0] == used and record["checks"][-1][2] >= 0.97
    assert all(check[2] < 0.97 for check in record["checks"][:-1])  # it stopped at the first check that passed
    # The same masks, the same values: the adaptive run is the whole run cut short.
    np.testing.assert_array_equal(adaptive.values, whole.values[:used])
    assert np.corrcoef(adaptive.map.ravel(), whole.map.ravel())[0, 1] >= 0.95


def test_the_stop_does_not_depend_on_the_batch_size(testnet):
    model, image = testnet
    first = onnxplain.create_method("rise", n_masks=1200, converge=0.96, seed=5).attribute(model, image)
    other = onnxplain.create_method("rise", n_masks=1200, converge=0.96, seed=5).attribute(model, image, batch_size=7)
    assert first.record["convergence"]["masks_used"] == other.record["convergence"]["masks_used"]
    np.testing.assert_allclose(first.map, other.map, atol=1e-12)


def test_a_budget_too_small_to_converge_runs_whole(testnet):
    model, image = testnet
    attr = onnxplain.create_method("rise", n_masks=300, converge=0.999).attribute(model, image)
    assert attr.record["convergence"]["masks_used"] == 300 == len(attr.values)


def test_without_converge_nothing_changes(testnet):
    model, image = testnet
    attr = onnxplain.create_method("rise", n_masks=64).attribute(model, image)
    assert "convergence" not in attr.record and len(attr.values) == 64


def test_judged_against_the_limit_it_stops_no_earlier_than_against_the_budget(testnet):
    model, image = testnet
    runs = {against: onnxplain.create_method("rise", n_masks=1500, converge=0.95, converge_to=against, seed=2)
            .attribute(model, image).record["convergence"] for against in ("budget", "limit")}
    assert runs["budget"]["against"] == "budget" and runs["limit"]["against"] == "limit"
    assert runs["budget"]["masks_used"] < runs["limit"]["masks_used"]
    # The same halves at the same checkpoint: the budget's map, which shares the masks so far, is the closer.
    shared = runs["budget"]["checks"][0]
    assert shared[:2] == runs["limit"]["checks"][0][:2] and shared[2] > runs["limit"]["checks"][0][2]


def test_the_prediction_matches_a_simulated_measurement():
    # Each "mask" gives the true map plus independent noise: the map of n masks is their mean.
    rng = np.random.default_rng(0)
    truth = rng.normal(size=3000)
    samples = truth + rng.normal(scale=12.0, size=(2000, truth.size))
    for n in (200, 500, 1000):
        halves = np.corrcoef(samples[:n:2].mean(axis=0), samples[1:n:2].mean(axis=0))[0, 1]
        quarters = np.corrcoef(np.stack([samples[part:n:4].mean(axis=0) for part in range(4)]))
        quarters = quarters[np.triu_indices(4, k=1)].mean()
        measured = np.corrcoef(samples[:n].mean(axis=0), samples.mean(axis=0))[0, 1]
        limit = np.corrcoef(samples[:n].mean(axis=0), truth)[0, 1]
        for correlation, parts in ((halves, 2), (quarters, 4)):
            assert expected_correlation(correlation, parts=parts, budget_share=n / 2000) == pytest.approx(measured,
                                                                                                        abs=0.02)
            assert expected_correlation(correlation, parts=parts) == pytest.approx(limit, abs=0.02)


@pytest.mark.parametrize("options,fragment", [({"converge": 1.5}, "converge is a correlation in (0, 1)"),
                                              ({"converge": 0.9, "per_pixel_max": True}, "without converge"),
                                              ({"converge": 0.9, "converge_to": "infinity"},
                                               "converge_to must be one of budget, limit; got 'infinity'")])
def test_bad_convergence_settings_say_why(options, fragment):
    with pytest.raises(OnnxplainError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        onnxplain.create_method("rise", **options)


def test_the_command_line_says_where_rise_stopped(runner, tmp_path):
    from test_cli import run

    image = data.testnet_model_path().parent / "samples" / "images" / "000001.png"
    result = run(runner, "explain", data.testnet_model_path(), image, "--method", "rise", "-p", "n_masks=300",
                 "-p", "converge=0.999", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "not converged to 0.999 within 300 masks" in result.output
