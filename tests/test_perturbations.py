"""The perturbation contract, HDM circles and RISE grids."""

import numpy as np
import pytest

from onnxplain.errors import OnnxplainError
from onnxplain.hdm import HdmPerturbation
from onnxplain.rise import RisePerturbation

PERTURBATIONS = [
    HdmPerturbation(circle_size=7, offset=4),
    RisePerturbation(n_masks=30, grid_size=4, p1=0.5),
]
SHAPES = [(24, 24), (20, 33)]  # square and not


@pytest.mark.parametrize("perturbation", PERTURBATIONS, ids=lambda p: p.name)
@pytest.mark.parametrize("shape", SHAPES)
def test_mask_contract(perturbation, shape):
    total = perturbation.count(shape)
    masks = perturbation.make_masks(shape, 0, total, seed=3)
    assert masks.shape == (total, *shape) and masks.dtype == np.float32
    assert masks.min() >= 0 and masks.max() <= 1


@pytest.mark.parametrize("perturbation", PERTURBATIONS, ids=lambda p: p.name)
def test_masks_do_not_depend_on_batching(perturbation):
    shape = (20, 33)
    total = perturbation.count(shape)
    whole = perturbation.make_masks(shape, 0, total, seed=5)
    pieces = np.concatenate([perturbation.make_masks(shape, s, min(s + 7, total), seed=5) for s in range(0, total, 7)])
    np.testing.assert_array_equal(whole, pieces)


@pytest.mark.parametrize("perturbation", PERTURBATIONS, ids=lambda p: p.name)
def test_apply_mask_leaves_the_image_alone(perturbation):
    image = np.random.default_rng(0).random((20, 33, 3), dtype=np.float32)
    before = image.copy()
    masks = perturbation.make_masks((20, 33), 0, 4)
    perturbed = perturbation.apply_mask(image, masks)
    assert perturbed.shape == (4, 20, 33, 3)
    np.testing.assert_array_equal(image, before)
    np.testing.assert_allclose(perturbed, image * masks[..., None], rtol=1e-6)  # black fill


def test_fills():
    image = np.random.default_rng(1).random((16, 16, 1), dtype=np.float32)
    masks = np.zeros((1, 16, 16), np.float32)  # hide everything
    assert np.allclose(HdmPerturbation(fill=0.25).apply_mask(image, masks), 0.25)
    assert np.allclose(HdmPerturbation(fill="mean").apply_mask(image, masks), image.mean())
    blurred = HdmPerturbation(fill="blur", blur_sigma=3).apply_mask(image, masks)[0]
    assert blurred.std() < image.std() / 2 and abs(blurred.mean() - image.mean()) < 0.05
    assert np.allclose(HdmPerturbation(normalize=True).apply_mask(image, masks), -1.0)


def test_channel_option_masks_one_channel():
    image = np.ones((8, 8, 3), np.float32)
    masks = np.zeros((1, 8, 8), np.float32)
    perturbed = HdmPerturbation(channel=1).apply_mask(image, masks)[0]
    assert perturbed[..., 1].max() == 0 and perturbed[..., [0, 2]].min() == 1


def test_hdm_grid_and_circles():
    hdm = HdmPerturbation(circle_size=5, offset=4)
    assert hdm.geometry((20, 33)) == (5, 4, 5, 9)  # ceil(20/4) rows, ceil(33/4) columns
    rows, columns = hdm.centers((20, 33))
    assert (rows[0], columns[0], rows[9], columns[1]) == (1.5, 1.5, 5.5, 5.5)
    mask = hdm.make_masks((20, 33), 10, 11)[0]  # row 1, column 1: centred at (5.5, 5.5)
    hidden = np.argwhere(mask == 0)
    assert hidden.mean(axis=0) == pytest.approx([5.5, 5.5])
    assert len(hidden) == 16  # the pixels of a 5 px disc centred between four pixels


def test_hdm_defaults_scale_with_the_image():
    assert HdmPerturbation().geometry((240, 240))[:2] == (25, 10)
    assert HdmPerturbation().geometry((480, 960))[:2] == (50, 20)


def test_rise_masks_are_smooth_random_grids():
    rise = RisePerturbation(n_masks=400, grid_size=6, p1=0.3)
    masks = rise.make_masks((48, 60), 0, 400, seed=0)
    assert masks.mean() == pytest.approx(0.3, abs=0.03)
    assert np.abs(np.diff(masks, axis=2)).max() <= 1 / 10 + 1e-6  # bilinear over 10 px cells


def test_rise_seed_changes_the_masks_and_repeats_them():
    rise = RisePerturbation(n_masks=5)
    a = rise.make_masks((16, 16), 0, 5, seed=1)
    assert np.array_equal(a, rise.make_masks((16, 16), 0, 5, seed=1))
    assert not np.array_equal(a, rise.make_masks((16, 16), 0, 5, seed=2))


def test_rise_masks_save_and_load(tmp_path):
    rise = RisePerturbation(n_masks=10, grid_size=3)
    path = rise.save_masks(tmp_path / "masks.npy", (12, 20), seed=4, batch_size=3)
    loaded = RisePerturbation(masks_file=str(path))
    assert loaded.count((12, 20)) == 10
    np.testing.assert_array_equal(loaded.make_masks((12, 20), 2, 9), rise.make_masks((12, 20), 2, 9, seed=4))
    with pytest.raises(OnnxplainError, match="generate masks for this image size"):
        loaded.make_masks((12, 21), 0, 1)


def test_rise_masks_file_errors(tmp_path):
    with pytest.raises(OnnxplainError, match="masks file not found"):
        RisePerturbation(masks_file=str(tmp_path / "none.npy"))
    np.save(tmp_path / "flat.npy", np.zeros(5))
    with pytest.raises(OnnxplainError, match=r"masks are shaped \(N, H, W\)"):
        RisePerturbation(masks_file=str(tmp_path / "flat.npy"))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: HdmPerturbation(circle_size=0), "circle_size must be at least 1"),
        (lambda: HdmPerturbation(offset=0), "offset must be at least 1"),
        (lambda: HdmPerturbation(fill="purple"), "fill must be one of black, mean, blur"),
        (lambda: HdmPerturbation(normalize=True, fill="mean"), "cannot be combined"),
        (lambda: RisePerturbation(p1=0), r"p1 is the probability of keeping a cell, in \(0, 1\]"),
        (lambda: RisePerturbation(n_masks=0), "n_masks must be at least 1"),
    ],
)
def test_bad_parameters_are_refused_at_construction(make, message):
    with pytest.raises(OnnxplainError, match=message):
        make()


def test_mask_range_is_checked():
    with pytest.raises(OnnxplainError, match="outside 0:"):
        HdmPerturbation(offset=8).make_masks((16, 16), 0, 5)


def test_parameters_are_recorded():
    assert HdmPerturbation(offset=3).parameters() == {
        "circle_size": None, "offset": 3, "normalize": False, "fill": "black", "blur_sigma": 10.0, "channel": None}
    assert RisePerturbation().parameters()["n_masks"] == 1000


def test_rise_upsampling_is_the_reference_bilinear_resize():
    from skimage.transform import resize

    from onnxplain.rise import _upsampling

    grid = np.random.default_rng(0).random((5, 5)).astype(np.float32)
    rows, columns = _upsampling((37, 23), 5)
    expected = resize(grid, (len(rows), len(columns)), order=1, mode="reflect", anti_aliasing=False)
    np.testing.assert_allclose(rows @ grid @ columns.T, expected, atol=1e-6)


@pytest.mark.parametrize(
    "size, offset, shape", [(25, 5, (60, 48)), (5, 4, (20, 33)), (7, 2, (13, 9)), (24, 10, (50, 61))]
)
def test_hdm_masks_are_discs_around_the_centres(size, offset, shape):
    hdm = HdmPerturbation(circle_size=size, offset=offset)
    masks = hdm.make_masks(shape, 0, hdm.count(shape))
    rows, columns = hdm.centers(shape)
    y, x = np.mgrid[: shape[0], : shape[1]]
    inside = (y - rows[:, None, None]) ** 2 + (x - columns[:, None, None]) ** 2 <= (size / 2) ** 2
    np.testing.assert_array_equal(masks, (~inside).astype(np.float32))
