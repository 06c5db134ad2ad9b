"""The 2019 interpret_segmentation API, ported: scripts change only their imports."""

import numpy as np
import pytest
from PIL import Image

from onnxplain import data
from onnxplain.compat import hdm
from onnxplain.compat.rise import SegmentationRISE
from onnxplain.distances import hausdorff_distance
from onnxplain.errors import OnnxplainError
from onnxplain.model import OnnxModel


def test_hdm_example_script(brightness, bright_square):
    # The 2019 example, with a model path instead of a PyTorch module and no device argument.
    segment = bright_square[..., 0] > 0.5
    explainer = hdm.HausdorffDistanceMasks(32, 32)
    explainer.generate_masks(circle_size=5, offset=2)
    result = explainer.explain(brightness(), bright_square[..., 0], segment, "cpu")
    raw = result.circle_map(hdm.RAW, color_map="Blues")
    better = result.circle_map(hdm.BETTER_ONLY, color_map="Greens")
    worse = result.circle_map(hdm.WORSE_ONLY, color_map="Reds")
    assert all(isinstance(p, Image.Image) and p.size == (32, 32) for p in (raw, better, worse))
    grid = result.distances(hdm.RAW)
    assert grid.shape == (16, 16)
    np.testing.assert_array_equal(result.distances(hdm.WORSE_ONLY), np.maximum(grid - result.baseline, 0))
    np.testing.assert_array_equal(result.distances(hdm.BETTER_ONLY), np.maximum(result.baseline - grid, 0))


def test_hdm_distances_are_hausdorff_of_each_masked_output(brightness, bright_square):
    model = OnnxModel(brightness(), device="cpu")
    segment = bright_square[..., 0] > 0.5
    explainer = hdm.HausdorffDistanceMasks(32, 32)
    explainer.generate_masks(circle_size=7, offset=8)
    result = explainer.explain(model, bright_square, segment)
    masks = explainer.make_masks(0, 16)
    for i, mask in enumerate(masks):  # one at a time, the way 2019 did it
        output = model.predict((bright_square * mask[..., None])[None]).mask[0]
        assert result.distances().ravel()[i] == pytest.approx(hausdorff_distance(output, segment))


def test_channels_first_images_as_2019_tensors(brightness, bright_square):
    explainer = hdm.HausdorffDistanceMasks(32, 32)
    explainer.generate_masks(circle_size=5, offset=8)
    chw = bright_square.transpose(2, 0, 1)
    a = explainer.explain(brightness(), chw, bright_square[..., 0] > 0.5).distances()
    b = explainer.explain(brightness(), bright_square, bright_square[..., 0] > 0.5).distances()
    np.testing.assert_array_equal(a, b)


def test_calculate_distance_and_apply_mask_are_swappable(brightness, bright_square):
    class CountingPixels(hdm.HausdorffDistanceMasks):
        def calculate_distance(self, output, segment):
            return float(np.count_nonzero(output != segment))

        def apply_mask(self, image, masks):
            return np.repeat(image[None], len(masks), axis=0)  # never occlude

    explainer = CountingPixels(32, 32)
    explainer.generate_masks(circle_size=5, offset=8)
    result = explainer.explain(brightness(), bright_square, bright_square[..., 0] > 0.5)
    assert not result.distances().any()


def test_non_square_images(brightness):
    image = np.zeros((20, 44), np.float32)
    image[5:12, 30:40] = 1.0
    explainer = hdm.HausdorffDistanceMasks(44, 20)
    explainer.generate_masks(circle_size=5, offset=4)
    result = explainer.explain(brightness(), image, image > 0.5)
    assert result.distances().shape == (5, 11)
    assert result.circle_map().size == (44, 20)
    assert result.pixel_map().shape == (20, 44)


def test_hdm_needs_masks_and_a_matching_image(brightness, bright_square):
    explainer = hdm.HausdorffDistanceMasks(32, 32)
    with pytest.raises(OnnxplainError, match="call generate_masks"):
        explainer.explain(brightness(), bright_square, bright_square[..., 0] > 0)
    explainer = hdm.HausdorffDistanceMasks(40, 32)
    explainer.generate_masks(circle_size=5, offset=8)
    with pytest.raises(OnnxplainError, match="made for 40x32"):
        explainer.explain(brightness(), bright_square, bright_square[..., 0] > 0)


def test_rise_example_script(brightness, bright_square, tmp_path):
    masks_path = tmp_path / "rise_masks.npy"
    explainer = SegmentationRISE(brightness(), (32, 32), "cpu", 16)
    if not masks_path.exists():
        explainer.generate_masks(N=60, s=4, p1=0.5, savepath=masks_path)
    result = explainer(bright_square[None])
    first = (result.max(), result.mean())
    explainer.load_masks(masks_path)  # the same masks, now read from the file
    again = explainer(bright_square)
    np.testing.assert_allclose(again.max(), first[0], atol=1e-6)
    np.testing.assert_allclose(again.mean(), first[1], atol=1e-6)
    assert first[0].shape == (32, 32) and (first[0] >= first[1] - 1e-6).all()


def test_rise_refuses_a_framework_model():
    class Module:
        pass

    with pytest.raises(OnnxplainError, match="export the model first"):
        SegmentationRISE(Module(), (32, 32))


def test_bundled_testnet_runs_through_the_2019_api():
    sample = data.load_sample(0)
    explainer = hdm.HausdorffDistanceMasks(240, 240)
    explainer.generate_masks(circle_size=25, offset=40)
    result = explainer.explain(data.testnet_model_path(), sample.image, sample.segment, "cpu")
    assert result.distances().shape == (6, 6)
