"""The mask-source contract for every method, fills, and each method's own masks."""

import numpy as np
import pytest

from onnxplain.errors import OnnxplainError
from onnxplain.perturbation.ablation import Ablation
from onnxplain.perturbation.fill import blend, fill_image
from onnxplain.perturbation.hdm import CircleMasks, Hdm
from onnxplain.perturbation.kernel_shap import KernelShap
from onnxplain.perturbation.lime import Lime
from onnxplain.perturbation.occlusion import BoxMasks, Occlusion
from onnxplain.perturbation.rise import Rise, RiseMasks, _upsampling
from onnxplain.perturbation.shapley import ShapleySampling
from onnxplain.perturbation.superpixels import superpixels

METHODS = [
    Hdm(circle_size=7, offset=4),
    Rise(n_masks=30, grid_size=4, p1=0.5, seed=3),
    Occlusion(window=6, stride=4),
    Ablation(segments="grid", n_segments=12),
    Lime(n_samples=20, segments="grid", n_segments=12, seed=3),
    KernelShap(n_samples=20, segments="grid", n_segments=12, seed=3),
    ShapleySampling(n_permutations=2, segments="grid", n_segments=12, seed=3),
]
SHAPES = [(24, 24), (20, 33)]  # square and not


def image_of(shape, channels=1, seed=0):
    return np.random.default_rng(seed).random((*shape, channels), dtype=np.float32)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
@pytest.mark.parametrize("shape", SHAPES)
def test_mask_contract(method, shape):
    source = method.mask_source(image_of(shape))
    masks = source.batch(0, len(source)).masks
    assert masks.shape == (len(source), *shape) and masks.dtype == np.float32
    assert masks.min() >= 0 and masks.max() <= 1


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_masks_do_not_depend_on_batching_and_repeat(method):
    image = image_of((20, 33))
    source = method.mask_source(image)
    whole = source.batch(0, len(source)).masks
    pieces = np.concatenate([source.batch(s, min(s + 7, len(source))).masks for s in range(0, len(source), 7)])
    np.testing.assert_array_equal(whole, pieces)
    np.testing.assert_array_equal(whole, method.mask_source(image).batch(0, len(source)).masks)


@pytest.mark.parametrize("method", [m for m in METHODS if "seed" in m.parameters() and m.name != "ablation"
                                    and m.name not in ("hdm", "occlusion")], ids=lambda m: m.name)
def test_another_seed_gives_other_masks(method):
    image = image_of((20, 33))
    other = type(method)(**{**method.parameters(), "seed": 99, "score": None, "aggregator": None})
    a, b = method.mask_source(image), other.mask_source(image)
    assert not np.array_equal(a.batch(0, len(a)).masks, b.batch(0, len(b)).masks)


def test_blend_leaves_the_image_alone():
    image = image_of((20, 33), channels=3)
    before = image.copy()
    masks = RiseMasks((20, 33), n_masks=4, grid_size=3, p1=0.5, seed=0).batch(0, 4).masks
    perturbed = blend(image, masks, 0.0)
    assert perturbed.shape == (4, 20, 33, 3)
    np.testing.assert_array_equal(image, before)
    np.testing.assert_allclose(perturbed, image * masks[..., None], rtol=1e-6)  # black fill


def test_fills():
    image = image_of((16, 16), channels=3, seed=1)
    hidden = np.zeros((1, 16, 16), np.float32)  # hide everything
    assert np.allclose(blend(image, hidden, fill_image(image, 0.25)), 0.25)
    assert np.allclose(blend(image, hidden, fill_image(image, "mean")), image.mean(axis=(0, 1)))
    assert np.allclose(blend(image, hidden, fill_image(image, "0.1,0.2,0.3")), [0.1, 0.2, 0.3])
    assert np.allclose(blend(image, hidden, fill_image(image, [0.5, 0.0, 1.0])), [0.5, 0.0, 1.0])
    blurred = blend(image, hidden, fill_image(image, "blur", blur_sigma=3))[0]
    assert blurred.std() < image.std() / 2 and abs(blurred.mean() - image.mean()) < 0.05
    with pytest.raises(OnnxplainError, match="gives 2 values but the image has 3 channel"):
        fill_image(image, "0.1,0.2")


def test_blur_fill_works_on_volumes():
    volume = image_of((6, 7, 8))
    assert fill_image(volume, "blur", blur_sigma=1).shape == volume.shape


def test_channel_option_masks_one_channel():
    image = np.ones((8, 8, 3), np.float32)
    perturbed = blend(image, np.zeros((1, 8, 8), np.float32), 0.0, channel=1)[0]
    assert perturbed[..., 1].max() == 0 and perturbed[..., [0, 2]].min() == 1


def test_hdm_grid_and_circles():
    circles = CircleMasks((20, 33), circle_size=5, offset=4)
    assert (circles.circle_size, circles.offset, circles.rows, circles.columns) == (5, 4, 5, 9)
    rows, columns = circles.centers()
    assert (rows[0], columns[0], rows[9], columns[1]) == (1.5, 1.5, 5.5, 5.5)
    mask = circles.batch(10, 11).masks[0]  # row 1, column 1: centred at (5.5, 5.5)
    hidden = np.argwhere(mask == 0)
    assert hidden.mean(axis=0) == pytest.approx([5.5, 5.5])
    assert len(hidden) == 16  # the pixels of a 5 px disc centred between four pixels


def test_hdm_defaults_scale_with_the_image():
    assert CircleMasks((240, 240)).circle_size == 25 and CircleMasks((240, 240)).offset == 10
    assert CircleMasks((480, 960)).circle_size == 50 and CircleMasks((480, 960)).offset == 20


@pytest.mark.parametrize(
    "size, offset, shape", [(25, 5, (60, 48)), (5, 4, (20, 33)), (7, 2, (13, 9)), (24, 10, (50, 61))]
)
def test_hdm_masks_are_discs_around_the_centres(size, offset, shape):
    circles = CircleMasks(shape, circle_size=size, offset=offset)
    masks = circles.batch(0, len(circles)).masks
    rows, columns = circles.centers()
    y, x = np.mgrid[: shape[0], : shape[1]]
    inside = (y - rows[:, None, None]) ** 2 + (x - columns[:, None, None]) ** 2 <= (size / 2) ** 2
    np.testing.assert_array_equal(masks, (~inside).astype(np.float32))


def test_normalize_fills_circles_with_minus_one():
    image = image_of((16, 16))
    hdm = Hdm(normalize=True, circle_size=5, offset=8)
    masks = hdm.mask_source(image).batch(0, 1).masks
    perturbed = hdm.apply(image, masks, fill_image(image, hdm.fill))
    assert perturbed[0][masks[0] == 0].max() == -1.0


def test_rise_masks_are_smooth_random_grids():
    masks = RiseMasks((48, 60), n_masks=400, grid_size=6, p1=0.3, seed=0).batch(0, 400).masks
    assert masks.mean() == pytest.approx(0.3, abs=0.03)
    assert np.abs(np.diff(masks, axis=2)).max() <= 1 / 10 + 1e-6  # bilinear over 10 px cells


def test_rise_masks_save_and_load(tmp_path):
    source = RiseMasks((12, 20), n_masks=10, grid_size=3, p1=0.5, seed=4)
    path = source.save(tmp_path / "masks.npy", batch_size=3)
    loaded = Rise(masks_file=str(path)).mask_source(image_of((12, 20)))
    assert len(loaded) == 10
    np.testing.assert_array_equal(loaded.batch(2, 9).masks, source.batch(2, 9).masks)
    with pytest.raises(OnnxplainError, match="generate masks for this image size"):
        Rise(masks_file=str(path)).mask_source(image_of((12, 21)))


def test_rise_masks_file_errors(tmp_path):
    with pytest.raises(OnnxplainError, match="masks file not found"):
        Rise(masks_file=str(tmp_path / "none.npy")).mask_source(image_of((4, 4)))
    np.save(tmp_path / "flat.npy", np.zeros(5))
    with pytest.raises(OnnxplainError, match=r"masks are shaped \(N, H, W\)"):
        Rise(masks_file=str(tmp_path / "flat.npy")).mask_source(image_of((4, 4)))


def test_rise_upsampling_is_the_reference_bilinear_resize():
    from skimage.transform import resize

    grid = np.random.default_rng(0).random((5, 5)).astype(np.float32)
    rows, columns = _upsampling((37, 23), 5)
    expected = resize(grid, (len(rows), len(columns)), order=1, mode="reflect", anti_aliasing=False)
    np.testing.assert_allclose(rows @ grid @ columns.T, expected, atol=1e-6)


def test_occlusion_boxes_match_captum_placement():
    boxes = BoxMasks((10, 13), window=4, stride=3)
    assert len(boxes) == 3 * 4  # ceil((10 - 4) / 3) + 1 rows, ceil((13 - 4) / 3) + 1 columns
    masks = boxes.batch(0, len(boxes)).masks
    assert (masks.min(axis=0) == 0).all()  # every pixel is covered by some box
    last = np.argwhere(masks[-1] == 0)
    assert last.min(axis=0).tolist() == [6, 9] and last.max(axis=0).tolist() == [9, 12]


def test_occlusion_boxes_in_three_dimensions():
    boxes = BoxMasks((8, 8, 8), window=4, stride=4)
    masks = boxes.batch(0, len(boxes)).masks
    assert len(boxes) == 8 and masks.shape == (8, 8, 8, 8) and (masks.sum(axis=0) == 7).all()


def test_superpixels_are_numbered_without_gaps():
    image = np.zeros((40, 40, 3), np.float32)
    image[5:20, 5:20] = [1.0, 0.2, 0.2]
    for segments in ("slic", "quickshift", "felzenszwalb", "grid"):
        labels = superpixels(image, segments, n_segments=16)
        assert labels.shape == (40, 40) and labels.min() == 0
        assert set(np.unique(labels)) == set(range(labels.max() + 1)), segments
    assert superpixels(image[..., :1], "slic", n_segments=16).max() >= 1  # grey images too


def test_superpixels_from_a_label_image(tmp_path):
    from PIL import Image

    labels = np.zeros((12, 16), np.uint8)
    labels[:, 8:] = 7
    labels[6:, :] = 200
    Image.fromarray(labels).save(tmp_path / "labels.png")
    read = superpixels(image_of((12, 16)), str(tmp_path / "labels.png"))
    assert read.max() == 2 and read[0, 0] == 0 and read[0, 15] == 1 and read[11, 0] == 2
    with pytest.raises(OnnxplainError, match=r"labels in .* are shaped \(12, 16\) but the image is \(12, 17\)"):
        superpixels(image_of((12, 17)), str(tmp_path / "labels.png"))


def test_coalitions():
    image = image_of((20, 20))
    ablation = Ablation(segments="grid", n_segments=4).mask_source(image)
    assert (ablation.batch(0, 4).coalitions.sum(axis=1) == 3).all()
    kernel = KernelShap(n_samples=12, segments="grid", n_segments=4).mask_source(image).batch(0, 12).coalitions
    assert not kernel[0].any() and kernel[1].all()
    np.testing.assert_array_equal(kernel[2::2], ~kernel[3::2])  # complementary pairs
    shapley = ShapleySampling(n_permutations=2, antithetic=True, segments="grid", n_segments=4).mask_source(image)
    rows = shapley.batch(0, len(shapley)).coalitions
    assert len(rows) == 9 and not rows[0].any() and rows[1:5].sum(axis=1).tolist() == [1, 2, 3, 4]
    first, second = (np.argmax(np.diff(rows[[0, *range(1 + 4 * p, 5 + 4 * p)]], axis=0), axis=1) for p in (0, 1))
    np.testing.assert_array_equal(second, first[::-1])  # the antithetic permutation is the reverse
    lime = Lime(n_samples=10, segments="grid", n_segments=4).mask_source(image).batch(0, 10).coalitions
    assert lime[0].all()  # LIME's first sample is the image itself


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Hdm(circle_size=0), "circle_size must be at least 1"),
        (lambda: Hdm(offset=0), "offset must be at least 1"),
        (lambda: Hdm(fill="purple"), "fill must be one of black, mean, blur"),
        (lambda: Hdm(normalize=True, fill="mean"), "cannot be combined"),
        (lambda: Rise(p1=0), r"p1 is the probability of keeping a cell, in \(0, 1\]"),
        (lambda: Rise(n_masks=0), "n_masks must be at least 1"),
        (lambda: Occlusion(window=0), "window and stride must be at least 1"),
        (lambda: Lime(n_samples=1), "n_samples must be at least 2"),
        (lambda: Ablation(segments="nosuch"), "segments must be one of slic, quickshift, felzenszwalb, grid"),
        (lambda: ShapleySampling(n_permutations=0), "n_permutations must be at least 1"),
        (lambda: Hdm(aggregator="nosuch"), "unknown aggregator 'nosuch'; installed: .*kept-mean"),
    ],
)
def test_bad_parameters_are_refused_at_construction(make, message):
    with pytest.raises(OnnxplainError, match=message):
        make()


def test_mask_range_is_checked():
    with pytest.raises(OnnxplainError, match="outside 0:"):
        CircleMasks((16, 16), offset=8).batch(0, 5)


def test_parameters_are_recorded():
    assert Hdm(offset=3).parameters() == {
        "circle_size": None, "offset": 3, "normalize": False, "variant": "segment", "refine": None, "refine_step": 4,
        "fill": "blur",
        "blur_sigma": 10.0, "channel": None,
        "score": {"name": "segment-distance",
                  "parameters": {"statistic": "mean", "direction": "reference", "margin": None}},
        "aggregator": {"name": "occluded-mean", "parameters": {}}, "seed": 0}
    legacy = Hdm(variant="2019").parameters()
    assert legacy["fill"] == "black" and legacy["score"] == {
        "name": "hausdorff", "parameters": {"statistic": "max", "direction": "both", "margin": None}}
    assert Hdm(variant="2019", fill="mean").parameters()["fill"] == "mean"  # explicit settings win
    assert Rise().parameters()["n_masks"] == 1000
    assert Lime().parameters()["aggregator"]["parameters"] == {"kernel": "exponential", "kernel_width": 0.25,
                                                               "ridge": 1.0}


def test_superpixels_from_a_colour_painted_image(tmp_path):
    from PIL import Image

    painted = np.zeros((6, 8, 3), np.uint8)
    painted[:, 4:] = [255, 0, 0]
    painted[3:, :4] = [0, 0, 255]
    Image.fromarray(painted).save(tmp_path / "painted.png")
    labels = superpixels(image_of((6, 8)), str(tmp_path / "painted.png"))
    assert labels.max() == 2 and len({labels[0, 0], labels[0, 7], labels[5, 0]}) == 3
