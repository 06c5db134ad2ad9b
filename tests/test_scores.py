"""Scores: Hausdorff against an independent computation, Dice, class score, empty references."""

import numpy as np
import pytest
from scipy.spatial.distance import directed_hausdorff

from onnxplain.distances import empty_distance, hausdorff_distance
from onnxplain.errors import OnnxplainError
from onnxplain.outputs import ModelOutput
from onnxplain.scores import ClassScore, DiceScore, HausdorffScore
from onnxplain.targets import Reference


def scipy_hausdorff(a, b):
    pa, pb = np.argwhere(a), np.argwhere(b)
    return max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0])


def outputs(masks, probability=None):
    masks = np.asarray(masks, bool)
    return ModelOutput(probability=masks.astype(np.float32) if probability is None else probability, mask=masks)


@pytest.mark.parametrize("seed", range(20))
def test_hausdorff_matches_scipy_on_pixel_coordinates(seed):
    rng = np.random.default_rng(seed)
    density_a, density_b = rng.uniform(0.001, 0.3, 2)
    a = rng.random((40, 50)) < density_a
    b = rng.random((40, 50)) < density_b
    a[rng.integers(40), rng.integers(50)] = True  # never empty
    b[rng.integers(40), rng.integers(50)] = True
    assert hausdorff_distance(a, b) == pytest.approx(scipy_hausdorff(a, b), abs=1e-9)


@pytest.mark.parametrize("seed", range(10))
def test_hausdorff_matches_scipy_on_blobs(seed):
    # Filled shapes: the case where a distance maximum can lie inside a set, not on its edge.
    rng = np.random.default_rng(100 + seed)
    y, x = np.mgrid[:60, :60]
    a = (y - rng.integers(10, 50)) ** 2 + (x - rng.integers(10, 50)) ** 2 < rng.integers(20, 300)
    b = np.abs(y - rng.integers(10, 50)) < rng.integers(2, 15)
    b &= np.abs(x - rng.integers(10, 50)) < rng.integers(2, 15)
    assert hausdorff_distance(a, b) == pytest.approx(scipy_hausdorff(a, b), abs=1e-9)


def test_rows_are_not_points():
    # The 2019 code compared image rows as points and found 0 here.
    a = np.zeros((30, 30), bool)
    a[5:10, 5:10] = True
    b = np.roll(a, 5, axis=0)
    assert hausdorff_distance(a, b) == 5.0


def test_empty_masks_rule():
    empty, full = np.zeros((10, 20), bool), np.ones((10, 20), bool)
    assert hausdorff_distance(empty, empty) == 0.0
    assert hausdorff_distance(empty, full) == hausdorff_distance(full, empty) == empty_distance((10, 20))
    assert empty_distance((10, 20)) == pytest.approx(np.hypot(9, 19))


@pytest.mark.parametrize("seed", range(5))
def test_batched_hausdorff_score_equals_the_function(seed):
    rng = np.random.default_rng(seed)
    reference = rng.random((24, 24)) < 0.1
    masks = rng.random((6, 24, 24)) < rng.uniform(0, 0.2, (6, 1, 1))
    masks[0] = False  # an empty output
    distances = HausdorffScore().calculate_distance(outputs(masks), Reference(reference))
    np.testing.assert_allclose(distances, [hausdorff_distance(m, reference) for m in masks])


def test_region_of_interest_limits_mask_scores():
    reference = np.zeros((10, 10), bool)
    reference[1:3, 1:3] = True
    output = reference.copy()
    output[8, 8] = True  # a stray pixel outside the region
    roi = np.zeros((10, 10), bool)
    roi[:5, :5] = True
    assert HausdorffScore().calculate_distance(outputs([output]), Reference(reference, roi))[0] == 0.0
    assert HausdorffScore().calculate_distance(outputs([output]), Reference(reference))[0] > 8
    assert DiceScore().calculate_distance(outputs([output]), Reference(reference, roi))[0] == 0.0


def test_dice_distance():
    reference = np.zeros((4, 4), bool)
    reference[:2] = True
    half = np.zeros((4, 4), bool)
    half[:1] = True
    distances = DiceScore().calculate_distance(outputs([reference, half, ~reference]), Reference(reference))
    np.testing.assert_allclose(distances, [0.0, 1 - 2 * 4 / 12, 1.0])


def test_class_score_is_the_mean_probability_over_the_region():
    probability = np.random.default_rng(0).random((3, 6, 6)).astype(np.float32)
    region = np.zeros((6, 6), bool)
    region[2:4, 1:5] = True
    reference = Reference(np.zeros((6, 6), bool), roi=region)
    distances = ClassScore().calculate_distance(outputs(probability > 2, probability), reference)
    np.testing.assert_allclose(1 - distances, probability[:, region].mean(axis=1), rtol=1e-6)


def test_class_score_of_a_whole_class_uses_the_reference_pixels():
    reference = np.zeros((6, 6), bool)
    reference[0] = True
    probability = np.zeros((1, 6, 6), np.float32)
    probability[0, 0] = 0.8
    distance = ClassScore().calculate_distance(outputs(probability > 0.5, probability), Reference(reference))
    assert distance[0] == pytest.approx(0.2)


@pytest.mark.parametrize("score", [HausdorffScore(), DiceScore(), ClassScore()])
def test_empty_reference_is_refused(score):
    with pytest.raises(OnnxplainError, match="reference segment .* is empty"):
        score.check(Reference(np.zeros((5, 5), bool)))


def test_class_score_accepts_a_region_where_nothing_is_segmented():
    roi = np.zeros((5, 5), bool)
    roi[0, 0] = True
    ClassScore().check(Reference(np.zeros((5, 5), bool), roi=roi))
    with pytest.raises(OnnxplainError, match="region of interest is empty"):
        ClassScore().check(Reference(np.ones((5, 5), bool), roi=np.zeros((5, 5), bool)))


def test_scores_do_not_change_their_inputs():
    reference = np.random.default_rng(3).random((8, 8)) < 0.3
    masks = np.random.default_rng(4).random((2, 8, 8)) < 0.3
    before = (reference.copy(), masks.copy())
    for score in (HausdorffScore(), DiceScore(), ClassScore()):
        score.calculate_distance(outputs(masks), Reference(reference))
    np.testing.assert_array_equal(reference, before[0])
    np.testing.assert_array_equal(masks, before[1])


def test_edge_pixels_are_the_erosion_boundary():
    from scipy.ndimage import binary_erosion

    from onnxplain.distances import edge_pixels

    masks = np.random.default_rng(7).random((4, 15, 17)) < 0.6
    expected = np.stack([m & ~binary_erosion(m) for m in masks])  # image borders count as outside
    np.testing.assert_array_equal(edge_pixels(masks), expected)
