"""Scores on 3-D volumes with anisotropic voxels: distances in millimetres, checked against brute force and medpy."""

import itertools

import numpy as np
import pytest
from scipy.ndimage import binary_erosion, generate_binary_structure
from scipy.spatial.distance import cdist, directed_hausdorff

from onnxplain.distances import edge_pixels, empty_distance, hausdorff_distance, surface_distances
from onnxplain.errors import OnnxplainError
from onnxplain.outputs import ModelOutput
from onnxplain.scores import (
    ClassScore,
    DiceScore,
    HausdorffScore,
    SegmentDistanceScore,
    SurfaceDistanceScore,
    dice_coefficient,
)
from onnxplain.targets import Reference, make_reference

SPACING = (0.8, 1.2, 3.0)  # millimetres along i, j, k, as a NIfTI header gives them


def outputs(masks, probability=None):
    masks = np.asarray(masks, bool)
    return ModelOutput(probability=masks.astype(np.float32) if probability is None else probability, mask=masks)


def cube(shape=(14, 16, 12), start=(3, 4, 2), size=5):
    mask = np.zeros(shape, bool)
    mask[tuple(slice(s, s + size) for s in start)] = True
    return mask


def blobs(rng, shape=(12, 13, 10)):
    """A non-empty random volume: a few overlapping ellipsoids (filled, so with interiors and surfaces)."""
    grid = np.indices(shape)
    mask = np.zeros(shape, bool)
    for _ in range(rng.integers(1, 4)):
        centre = rng.uniform(0, shape)
        radii = rng.uniform(1.0, 4.0, 3)
        mask |= sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1
    mask[tuple(rng.integers(shape))] = True  # never empty
    return mask


def nearest_mm(a, b, spacing):
    """Brute force: from every voxel of `a` to the nearest voxel of `b`, in millimetres."""
    scale = np.asarray(spacing)
    return cdist(np.argwhere(a) * scale, np.argwhere(b) * scale).min(axis=1)


def surface(mask):
    """The surface as medpy finds it, independently of onnxplain: the mask minus its face-connected erosion."""
    return mask ^ binary_erosion(mask, structure=generate_binary_structure(mask.ndim, 1), border_value=0)


def diagonal_mm(shape, spacing):
    return float(np.sqrt(sum(((side - 1) * step) ** 2 for side, step in zip(shape, spacing, strict=True))))


# --- Hausdorff and segment distance in millimetres --------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_cubes_shifted_by_3_voxels_are_3_voxel_sizes_apart(axis):
    a = cube()
    b = np.roll(a, 3, axis=axis)
    expected = 3 * SPACING[axis]
    assert hausdorff_distance(a, b, spacing=SPACING) == pytest.approx(expected)
    reference = Reference(a, spacing=SPACING)
    assert HausdorffScore().calculate_distance(outputs([b]), reference)[0] == pytest.approx(expected)
    surface_max = SurfaceDistanceScore(statistic="max").calculate_distance(outputs([b]), reference)[0]
    assert surface_max == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(6))
def test_hausdorff_in_mm_matches_scipy_on_scaled_coordinates(seed):
    rng = np.random.default_rng(seed)
    a, b = blobs(rng), blobs(rng)
    pa, pb = np.argwhere(a) * SPACING, np.argwhere(b) * SPACING
    expected = max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0])
    assert hausdorff_distance(a, b, spacing=SPACING) == pytest.approx(expected, abs=1e-9)
    score = HausdorffScore().calculate_distance(outputs([a]), Reference(b, spacing=SPACING))[0]
    assert score == pytest.approx(expected, abs=1e-9)


def brute_force_score(output, reference, statistic, direction, margin):
    """`HausdorffScore` written from its docstring, with every distance from cdist."""
    if margin is not None:
        output = output.copy()
        output[output] = nearest_mm(output, reference, SPACING) <= margin
    parts = []
    if direction != "reference":
        parts.append(nearest_mm(output, reference, SPACING))
    if direction != "output":
        if not output.any():
            return diagonal_mm(output.shape, SPACING)
        parts.append(nearest_mm(reference, output, SPACING))
    pooled = np.concatenate(parts)
    if len(pooled) == 0:
        return 0.0
    return {"max": pooled.max(), "p95": np.percentile(pooled, 95), "mean": pooled.mean()}[statistic]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("statistic, direction, margin",
                         list(itertools.product(("max", "p95", "mean"), ("both", "reference", "output"), (None, 4.0))))
def test_every_hausdorff_variant_in_mm_matches_brute_force(seed, statistic, direction, margin):
    rng = np.random.default_rng(10 + seed)
    reference = blobs(rng)
    masks = np.stack([blobs(rng), blobs(rng), np.zeros_like(reference), reference])
    score = HausdorffScore(statistic=statistic, direction=direction, margin=margin)
    distances = score.calculate_distance(outputs(masks), Reference(reference, spacing=SPACING))
    expected = [brute_force_score(m, reference, statistic, direction, margin) for m in masks]
    np.testing.assert_allclose(distances, expected, atol=1e-9)


def test_segment_distance_mean_p95_and_margin_in_mm():
    reference = cube(start=(3, 4, 2), size=5)
    output = reference.copy()
    output[:, :, 4:] = False  # keeps k = 2..3 of the cube: the reference's k = 4..6 are lost, 1 to 3 slices away
    output[12, 14, 10] = True  # and a stray voxel far away, which the default direction ignores
    lost = nearest_mm(reference, output & (np.indices(output.shape)[0] < 12), SPACING)
    assert sorted(set(np.round(lost, 6))) == [0.0, 3.0, 6.0, 9.0]  # 3 mm per slice along k
    scored = Reference(reference, spacing=SPACING)
    mean = SegmentDistanceScore().calculate_distance(outputs([output]), scored)[0]
    p95 = SegmentDistanceScore(statistic="p95").calculate_distance(outputs([output]), scored)[0]
    assert mean == pytest.approx(lost.mean()) and mean == pytest.approx((3 + 6 + 9) / 5)
    assert p95 == pytest.approx(np.percentile(lost, 95))
    # Counting the output's voxels too, the stray voxel dominates unless the margin (in mm) drops it.
    both = SegmentDistanceScore(statistic="max", direction="both")
    stray_mm = nearest_mm(output & (np.indices(output.shape)[0] == 12), reference, SPACING)[0]
    assert both.calculate_distance(outputs([output]), scored)[0] == pytest.approx(stray_mm)
    margin = SegmentDistanceScore(statistic="max", direction="both", margin=stray_mm - 0.1)
    assert margin.calculate_distance(outputs([output]), scored)[0] == pytest.approx(9.0)


def test_margin_is_in_mm_not_voxels():
    reference = cube(shape=(6, 6, 12), start=(0, 0, 0), size=3)
    output = reference.copy()
    output[1, 1, 5] = True  # 3 slices along k past the cube: 9 mm with 3 mm slices
    scored = Reference(reference, spacing=SPACING)
    kept = HausdorffScore(margin=9.5).calculate_distance(outputs([output]), scored)[0]
    dropped = HausdorffScore(margin=8.5).calculate_distance(outputs([output]), scored)[0]
    assert kept == pytest.approx(9.0) and dropped == 0.0


# --- edges, empty outputs, Dice, class score ---------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_edge_voxels_are_the_face_connected_erosion_boundary(seed):
    volumes = np.random.default_rng(seed).random((3, 9, 10, 11)) < 0.7
    face = generate_binary_structure(3, 1)
    expected = np.stack([v & ~binary_erosion(v, structure=face, border_value=0) for v in volumes])
    np.testing.assert_array_equal(edge_pixels(volumes, ndim=3), expected)
    np.testing.assert_array_equal(edge_pixels(volumes[0], ndim=3), expected[0])


def test_edge_pixels_refuses_more_spatial_axes_than_the_mask_has():
    with pytest.raises(OnnxplainError, match="ndim must be between 1 and 2 for a mask shaped"):
        edge_pixels(np.ones((4, 4), bool), ndim=3)


def test_an_empty_output_is_the_volume_diagonal_in_mm():
    shape = (10, 12, 7)
    expected = np.sqrt((9 * 0.8) ** 2 + (11 * 1.2) ** 2 + (6 * 3.0) ** 2)
    assert empty_distance(shape, SPACING) == pytest.approx(expected)
    assert empty_distance(shape) == pytest.approx(np.sqrt(9**2 + 11**2 + 6**2))
    reference = Reference(cube(shape, start=(2, 2, 2), size=3), spacing=SPACING)
    empty = outputs([np.zeros(shape, bool)])
    for score in (HausdorffScore(), SegmentDistanceScore(), SurfaceDistanceScore(),
                  SurfaceDistanceScore(statistic="assd")):
        assert score.calculate_distance(empty, reference)[0] == pytest.approx(expected)
    assert hausdorff_distance(np.zeros(shape, bool), reference.mask, spacing=SPACING) == pytest.approx(expected)


def test_dice_in_3d_counts_every_voxel():
    reference = np.zeros((4, 5, 6), bool)
    reference[1:3, 1:4, 2:5] = True  # 2 * 3 * 3 = 18 voxels
    output = np.zeros_like(reference)
    output[1:3, 1:4, 3:6] = True  # 18 voxels, 2 * 3 * 2 = 12 of them shared
    np.testing.assert_allclose(dice_coefficient(output[None], reference), [2 * 12 / 36])
    distances = DiceScore().calculate_distance(outputs([reference, output, ~reference]), Reference(reference))
    np.testing.assert_allclose(distances, [0.0, 1 - 24 / 36, 1.0])


def test_class_score_averages_a_volume_region():
    probability = np.random.default_rng(0).random((2, 4, 5, 6)).astype(np.float32)
    region = np.zeros((4, 5, 6), bool)
    region[1:3, 0:2, 4:6] = True
    reference = Reference(np.zeros((4, 5, 6), bool), roi=region, spacing=SPACING)
    distances = ClassScore().calculate_distance(outputs(probability > 2, probability), reference)
    np.testing.assert_allclose(1 - distances, probability[:, region].mean(axis=1), rtol=1e-6)


def test_a_region_of_interest_limits_volume_scores():
    reference = cube(start=(2, 2, 2), size=3)
    output = reference.copy()
    output[12, 14, 10] = True  # a stray voxel outside the region
    roi = np.zeros_like(reference)
    roi[:8, :8, :8] = True
    for score in (HausdorffScore(), SurfaceDistanceScore(statistic="max"), DiceScore()):
        assert score.calculate_distance(outputs([output]), Reference(reference, roi, spacing=SPACING))[0] == 0.0
        assert score.calculate_distance(outputs([output]), Reference(reference, spacing=SPACING))[0] > 0


# --- surface distances: HD95, ASSD, Hausdorff ---------------------------------------------------------


def brute_force_surface(a, b, spacing):
    """Surface distances from an independent surface (binary_erosion) and every pair's distance (cdist)."""
    scale = np.asarray(spacing)
    pairs = cdist(np.argwhere(surface(a)) * scale, np.argwhere(surface(b)) * scale)
    return pairs.min(axis=1), pairs.min(axis=0)


@pytest.mark.parametrize("seed", range(8))
def test_surface_distances_match_brute_force(seed):
    rng = np.random.default_rng(20 + seed)
    a, b = blobs(rng), blobs(rng)
    a_to_b, b_to_a = surface_distances(a, b, spacing=SPACING)
    expected_a, expected_b = brute_force_surface(a, b, SPACING)
    np.testing.assert_allclose(a_to_b, expected_a, atol=1e-9)
    np.testing.assert_allclose(b_to_a, expected_b, atol=1e-9)
    pooled = np.concatenate([expected_a, expected_b])
    sa, sb = np.argwhere(surface(a)) * SPACING, np.argwhere(surface(b)) * SPACING
    surface_hausdorff = max(directed_hausdorff(sa, sb)[0], directed_hausdorff(sb, sa)[0])
    masks, reference = outputs([a]), Reference(b, spacing=SPACING)
    for statistic, expected in (("hd95", np.percentile(pooled, 95)), ("assd", pooled.mean()),
                                ("max", surface_hausdorff)):
        distance = SurfaceDistanceScore(statistic=statistic).calculate_distance(masks, reference)[0]
        assert distance == pytest.approx(expected, abs=1e-9), statistic


@pytest.mark.parametrize("seed", range(8))
def test_surface_distance_score_matches_medpy(seed):
    from medpy.metric import binary  # in the test extra: the independent implementation
    rng = np.random.default_rng(40 + seed)
    reference = blobs(rng)
    masks = np.stack([blobs(rng), blobs(rng), reference])
    scored = Reference(reference, spacing=SPACING)
    for statistic, medpy_metric in (("hd95", binary.hd95), ("assd", binary.assd), ("max", binary.hd)):
        distances = SurfaceDistanceScore(statistic=statistic).calculate_distance(outputs(masks), scored)
        expected = [medpy_metric(m, reference, voxelspacing=SPACING) for m in masks]
        np.testing.assert_allclose(distances, expected, atol=1e-9, err_msg=statistic)


def test_a_hole_counts_for_surface_distance_not_for_hausdorff():
    solid = cube(shape=(9, 9, 9), start=(0, 0, 0), size=9)
    holed = solid.copy()
    holed[4, 4, 4] = False  # its six face neighbours become surface, 3 voxels inside the outer surface
    assert hausdorff_distance(solid, holed) == 1.0
    assert SurfaceDistanceScore(statistic="max").calculate_distance(outputs([holed]), Reference(solid))[0] == 3.0


def test_hd95_pools_both_directions_as_medpy_does_not_the_larger_directed_percentile():
    a = cube(start=(3, 4, 2), size=5)
    b = a.copy()
    b[4:6, 5:7, 7:11] = True  # a 2x2 spike, 4 slices (3 mm each) out of the cube's top face
    a_to_b, b_to_a = surface_distances(a, b, spacing=SPACING)
    assert len(a_to_b) == 98 and len(b_to_a) == 110  # 5^3 - 3^3 surface voxels; b loses 4 under the spike, gains 16
    # The spike's 16 voxels are 3, 6, 9, 12 mm from a's surface; the 4 of a's top face they cover are 0.8 mm from
    # b's surface (one voxel along i); every other surface voxel is on both surfaces.
    pooled = np.sort(np.concatenate([a_to_b, b_to_a]))
    np.testing.assert_allclose(pooled[-20:], [0.8] * 4 + [3.0] * 4 + [6.0] * 4 + [9.0] * 4 + [12.0] * 4)
    assert not pooled[:-20].any()
    reference = Reference(b, spacing=SPACING)
    hd95 = SurfaceDistanceScore().calculate_distance(outputs([a]), reference)[0]
    assd = SurfaceDistanceScore(statistic="assd").calculate_distance(outputs([a]), reference)[0]
    assert hd95 == pytest.approx(6.0)  # pooled, as medpy; the larger directed 95th percentile (MONAI) is 9 mm
    assert max(np.percentile(a_to_b, 95), np.percentile(b_to_a, 95)) == pytest.approx(9.0)
    assert assd == pytest.approx((4 * 0.8 + 4 * (3 + 6 + 9 + 12)) / 208)


def test_surface_distances_refuse_empty_or_mismatched_masks():
    a = cube()
    with pytest.raises(OnnxplainError, match="need two non-empty masks"):
        surface_distances(a, np.zeros_like(a))
    with pytest.raises(OnnxplainError, match=r"masks shaped \(14, 16, 12\) and \(14, 16\) cannot be compared"):
        surface_distances(a, a[..., 0])
    with pytest.raises(OnnxplainError, match="statistic must be one of hd95, assd, max; got 'hd99'"):
        SurfaceDistanceScore(statistic="hd99")


def test_surface_distance_is_registered():
    from onnxplain.registry import plugins

    score = plugins.create("score", "surface-distance", statistic="assd")
    assert isinstance(score, SurfaceDistanceScore) and score.parameters() == {"statistic": "assd"}


# --- spacing --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spacing, complaint", [
    ((0.8, 1.2), r"spacing \(0.8, 1.2\) does not give one positive, finite size per axis of the 3-D output"),
    ((0.8, 0.0, 3.0), r"spacing \(0.8, 0.0, 3.0\) does not give one positive"),
    ((0.8, -1.0, 3.0), "does not give one positive"),
    ((0.8, float("nan"), 3.0), "does not give one positive"),
    (("a", "b", "c"), "does not give one positive"),
])
def test_make_reference_refuses_a_bad_spacing(spacing, complaint):
    with pytest.raises(OnnxplainError, match=complaint) as caught:
        make_reference(cube(), spacing=spacing)
    assert caught.value.parameters == ("spacing",)


def test_make_reference_keeps_the_spacing():
    reference = make_reference(cube(), spacing=[0.8, 1.2, 3])
    assert reference.spacing == SPACING and reference.spacing_per_axis == SPACING
    assert make_reference(cube()).spacing is None and make_reference(cube()).spacing_per_axis == (1.0, 1.0, 1.0)
    with pytest.raises(OnnxplainError, match="per axis of the 2-D output"):
        Reference(np.ones((4, 4), bool), spacing=SPACING)
