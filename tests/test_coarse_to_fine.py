"""Coarse-to-fine HDM and occlusion: fewer positions, spent where the score changes, the same map where it counts."""

import re

import numpy as np
import onnx_models
import pytest

import onnxplain
from onnxplain import data
from onnxplain.errors import OnnxplainError
from onnxplain.model import OnnxModel
from onnxplain.perturbation.refine import CoarseToFine


@pytest.fixture(scope="module")
def testnet():
    model = OnnxModel(data.testnet_model_path())
    return model, model.check_image(data.load_sample(0).image)


@pytest.fixture(scope="module")
def quadrant_top_left(tmp_path_factory):
    """A model whose every logit follows the mean of the image's top-left quadrant, on a bright image."""
    path = onnx_models.quadrant_model(tmp_path_factory.mktemp("quadrant") / "quadrant.onnx", threshold=0.25)
    return OnnxModel(path), np.full((32, 32, 1), 0.5, np.float32)


def pearson(first, second):
    return float(np.corrcoef(first.ravel(), second.ravel())[0, 1])


def test_hdm_refines_a_few_positions_to_the_whole_grids_map(testnet):
    model, image = testnet
    whole = onnxplain.create_method("hdm").attribute(model, image)
    refined = onnxplain.create_method("hdm", refine=0.05).attribute(model, image)
    run = refined.record["convergence"]
    assert run["masks_used"] == len(refined.values) and run["masks_available"] == len(whole.values) == 576
    # Positions and the 36 probes of 4 x 4 blocks together: 24 % of the whole grid's passes, measured.
    assert run["probes"] == 36 and run["passes"] == run["masks_used"] + 36 <= 0.3 * 576
    # Measured 0.994 (benchmarks/adaptive_sampling.py); every decisive circle of this sample is found.
    assert pearson(refined.map, whole.map) >= 0.98
    # Each evaluated position has the value the whole grid gave it: the same circle, the same output.
    evaluated = refined.arrays["evaluated"]
    np.testing.assert_allclose(refined.values, whole.values[evaluated], atol=1e-6)
    np.testing.assert_array_equal(refined.arrays["circles"], whole.arrays["circles"][evaluated])


def test_occlusion_refines_only_next_to_the_region_that_moves_the_output(quadrant_top_left):
    model, image = quadrant_top_left
    options = {"window": 8, "stride": 2, "score": "class-score"}
    whole = onnxplain.create_method("occlusion", **options).attribute(model, image)
    refined = onnxplain.create_method("occlusion", refine=0.1, refine_step=2, **options).attribute(model, image)
    run = refined.record["convergence"]
    coarse = run["levels"][0]["positions"]
    assert run["levels"][0]["step"] == 2 and coarse == 7 * 7  # boxes 0, 4, ... 24 along each axis of 13
    assert coarse < run["masks_used"] < len(whole.values)
    # Boxes at positions 0-6 start inside the top-left quadrant (16 px); refinement reaches one step past them.
    rows, columns = np.unravel_index(refined.arrays["evaluated"][coarse:], (13, 13))
    assert rows.max() <= 8 and columns.max() <= 8
    # Measured 0.9994: pixels at the region's edge average fewer unchanged boxes than the whole grid's.
    assert pearson(refined.map, whole.map) >= 0.995
    assert np.abs(refined.map - whole.map).max() <= 0.1 * whole.map.max()


def test_where_not_even_a_whole_block_hidden_changes_anything_the_coarse_grid_is_all(tmp_path):
    # Black circles on a black image: no output moves, and no block's probe either, so nothing small
    # can be hiding between the coarse circles.
    model = OnnxModel(onnx_models.quadrant_model(tmp_path / "always.onnx", threshold=-0.5))
    image = np.zeros((32, 32, 1), np.float32)
    attr = onnxplain.create_method("hdm", circle_size=8, offset=2, refine=0.0, fill="black",
                                   score="class-score").attribute(model, image)
    run = attr.record["convergence"]
    # A 16 x 16 grid: rows and columns 0, 4, 8, 12 and the last, 15; 4 x 4 blocks of 4 x 4 positions.
    assert [level["positions"] for level in run["levels"]] == [25, 0, 0] and run["probes"] == 16
    assert not attr.map.any()


def test_a_decisive_region_between_coarse_circles_is_not_missed(testnet):
    # On testnet sample 2 no circle of the coarse grid moves the segment; some circles between them do.
    model, _ = testnet
    image = data.load_sample(2).image
    whole = onnxplain.create_method("hdm").attribute(model, image)
    refined = onnxplain.create_method("hdm", refine=0.05).attribute(model, image)
    coarse = refined.record["convergence"]["levels"][0]["positions"]
    assert whole.map.max() > 0
    assert np.all(refined.values[:coarse] == refined.baseline_value)  # no coarse circle moved the score...
    # ...but the probe of the block holding the decider did, and its positions were evaluated (measured:
    # 21 % of the whole grid's passes, Pearson 0.994).
    assert pearson(refined.map, whole.map) >= 0.98
    assert refined.record["convergence"]["passes"] <= 0.3 * len(whole.values)


def test_a_tolerance_of_zero_where_everything_changes_evaluates_the_whole_grid(quadrant_top_left):
    model, image = quadrant_top_left
    options = {"window": 24, "stride": 2, "score": "class-score"}  # every box overlaps the top-left quadrant
    whole = onnxplain.create_method("occlusion", **options).attribute(model, image)
    refined = onnxplain.create_method("occlusion", refine=0.0, **options).attribute(model, image)
    assert refined.record["convergence"]["masks_used"] == len(whole.values)
    np.testing.assert_allclose(refined.map, whole.map, atol=1e-6)  # aggregated as the whole grid is


def test_the_positions_do_not_depend_on_the_batch_size(testnet):
    model, image = testnet
    first = onnxplain.create_method("hdm", refine=0.05, refine_step=3).attribute(model, image)
    other = onnxplain.create_method("hdm", refine=0.05, refine_step=3).attribute(model, image, batch_size=5)
    assert first.record["convergence"] == other.record["convergence"]
    np.testing.assert_array_equal(first.arrays["evaluated"], other.arrays["evaluated"])
    np.testing.assert_allclose(first.map, other.map, atol=1e-7)


def test_the_plan_follows_a_changed_region_past_its_first_neighbours():
    plan = CoarseToFine((9, 9), tolerance=0.5, step=2)
    plan.probed(np.zeros(len(plan.blocks())))  # no block's probe moved the output
    first = plan.first()
    assert len(first) == 25  # rows and columns 0, 2, 4, 6, 8
    changes = np.zeros((9, 9))
    changes[4, 0] = 1.0  # the coarse grid sees this one...
    changes[3, :] = 1.0  # ...at the end of a changed row it does not see
    chosen = plan.next(first, changes.ravel()[first])
    while len(chosen):
        chosen = plan.next(chosen, changes.ravel()[chosen])
    assert plan.evaluated[3].all() and plan.rounds[1] > 1  # followed, round after round, to the far end
    assert not plan.evaluated[6:, 1::2].any()  # and nowhere it has no business
    assert plan.record()["masks_used"] == int(plan.evaluated.sum())


@pytest.mark.parametrize("options,fragment", [
    ({"refine": 1.0}, "refine is a tolerance in [0, 1)"),
    ({"refine": -0.1}, "refine is a tolerance in [0, 1)"),
    ({"refine": 0.1, "refine_step": 1}, "refine_step is the coarse grid's step in positions, at least 2"),
])
@pytest.mark.parametrize("method", ["hdm", "occlusion"])
def test_bad_refinement_settings_say_why(method, options, fragment):
    with pytest.raises(OnnxplainError, match=fragment.replace("[", r"\[").replace(")", r"\)")) as error:
        onnxplain.create_method(method, **options)
    assert "\n" not in str(error.value)


def test_the_command_line_says_how_many_positions_it_evaluated(runner, tmp_path):
    from test_cli import run

    image = data.testnet_model_path().parent / "samples" / "images" / "000001.png"
    result = run(runner, "explain", data.testnet_model_path(), image, "--method", "hdm", "-p", "refine=0.05",
                 "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert re.search(r"refined coarse-to-fine: \d+ of 576 positions and 36 block probes", result.output), result.output
