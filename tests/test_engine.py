"""The engine on tiny models whose correct attribution is known."""

import json

import numpy as np
import pytest

from onnxplain import explain
from onnxplain.errors import OnnxplainError, PluginError
from onnxplain.model import OnnxModel
from onnxplain.perturbation.hdm import Hdm
from onnxplain.perturbation.rise import Rise, per_pixel_maps_max
from onnxplain.scores import ClassScore
from onnxplain.targets import Target


@pytest.fixture
def quadrant_model(quadrant):
    return OnnxModel(quadrant, device="cpu", batch_size=32)


@pytest.fixture
def lit_image():
    image = np.full((32, 32), 0.3, np.float32)
    image[:16, :16] = 0.6  # the quadrant that decides, well above its threshold of 0.25
    return image


def quadrant_masks(margin):
    """The deciding quadrant, and the pixels further than `margin` from it."""
    inside = np.zeros((32, 32), bool)
    inside[:16, :16] = True
    far = np.ones((32, 32), bool)
    far[: 16 + margin, : 16 + margin] = False
    return inside, far


def test_hdm_lights_only_the_deciding_quadrant(quadrant_model, lit_image):
    result = explain(quadrant_model, lit_image, method=Hdm(circle_size=9, offset=2, score="class-score"))
    inside, far = quadrant_masks(margin=9)  # no circle covering these pixels reaches the quadrant
    assert result.saliency[inside].mean() > 0
    np.testing.assert_allclose(result.saliency[far], 0.0, atol=1e-7)


def test_rise_lights_the_deciding_quadrant(quadrant_model, lit_image):
    result = explain(quadrant_model, lit_image, method=Rise(n_masks=1000, grid_size=4, seed=1))
    inside, far = quadrant_masks(margin=12)  # beyond the 8 px cells that tie a pixel to its neighbours
    assert result.saliency[inside].mean() > 5 * abs(result.saliency[far].mean())
    assert result.saliency[inside].mean() > 0


def test_hdm_with_hausdorff_finds_the_segmented_square(brightness, bright_square):
    model = OnnxModel(brightness(), device="cpu")
    result = explain(model, bright_square, method=Hdm(circle_size=5, offset=2, variant="2019"))
    on_square = np.zeros((32, 32), bool)
    on_square[8:16, 10:20] = True
    assert result.baseline_distance == 0.0
    assert result.saliency[on_square].min() > 0
    assert result.saliency[24:, :].max() == 0  # circles there never touch the square
    grid = result.distances.reshape(16, 16)
    assert grid.shape == (16, 16) and grid.max() > 0


def test_hdm_default_ignores_a_far_false_positive_that_the_2019_score_counts():
    # Two perturbed outputs: one adds a single stray pixel far away, one loses half the segment.
    from onnxplain.outputs import ModelOutput
    from onnxplain.scores import HausdorffScore, SegmentDistanceScore
    from onnxplain.targets import Reference

    reference = np.zeros((32, 32), bool)
    reference[8:16, 10:20] = True
    far_false_positive = reference.copy()
    far_false_positive[30, 30] = True
    lost_half = reference.copy()
    lost_half[8:16, 15:20] = False
    outputs = ModelOutput(mask=np.stack([far_false_positive, lost_half]), probability=np.zeros((2, 32, 32)))
    legacy = HausdorffScore().calculate_distance(outputs, Reference(reference))
    segment = SegmentDistanceScore().calculate_distance(outputs, Reference(reference))
    assert legacy[0] > legacy[1]  # the 2019 score: one stray pixel counts more than losing half the segment
    assert segment[0] == 0 and segment[1] > 0  # the default: losing the segment counts, the stray pixel not


def test_same_seed_same_map_other_seed_other_masks(quadrant_model, lit_image):
    a = explain(quadrant_model, lit_image, method=Rise(n_masks=50, grid_size=4, seed=3)).saliency
    b = explain(quadrant_model, lit_image, method="rise", n_masks=50, grid_size=4, seed=3).saliency
    c = explain(quadrant_model, lit_image, method=Rise(n_masks=50, grid_size=4, seed=4)).saliency
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_batch_size_does_not_change_the_map(quadrant_model, lit_image):
    rise = Rise(n_masks=40, grid_size=4)
    a = explain(quadrant_model, lit_image, method=rise, batch_size=7).saliency
    b = explain(quadrant_model, lit_image, method=rise, batch_size=40).saliency
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_progress_counts_every_forward_pass(quadrant_model, lit_image):
    done = []
    explain(quadrant_model, lit_image, method=Hdm(offset=5), batch_size=10, progress=done.append)
    assert sum(done) == Hdm(offset=5).count(np.zeros((32, 32, 1), np.float32)) and max(done) == 10


def test_per_pixel_maps(brightness, bright_square):
    model = OnnxModel(brightness(), device="cpu")
    target = Target.box(10, 8, 14, 12)
    result = explain(model, bright_square, method=Rise(n_masks=60, grid_size=4, per_pixel_max=True), target=target)
    # Brute force: every region pixel's own centred map, from one forward pass per mask, then their mean and maximum.
    source = Rise(n_masks=60, grid_size=4).mask_source(bright_square)
    masks = source.batch(0, 60).masks
    region = np.flatnonzero(target.region((32, 32)))
    scores = np.concatenate([model.predict(bright_square[None] * m[None, ..., None]).probability_at(region)
                             for m in masks])
    flat = masks.reshape(60, -1)
    maps = ((scores - scores.mean(0)).T @ flat) / flat.sum(0)
    np.testing.assert_allclose(maps.mean(0).reshape(32, 32), result.saliency, atol=1e-5)
    np.testing.assert_allclose(maps.max(0).reshape(32, 32), result.arrays["rise_max"], atol=1e-5)
    small_blocks = per_pixel_maps_max(scores.astype(np.float32), source, memory_bytes=8 * 1024 * 5)
    np.testing.assert_allclose(maps.max(0).reshape(32, 32), small_blocks, atol=1e-5)  # blocks of 5 region pixels


def test_save_writes_whole_files_and_a_record(brightness, bright_square, tmp_path):
    model = OnnxModel(brightness(), device="cpu")
    result = explain(model, bright_square, method="hdm", offset=8, seed=2)
    written = result.save(tmp_path / "out", extra={"image_file": "square.png"})
    names = {p.name for p in written}
    assert {"saliency.npy", "distances.npy", "image.npy", "segment.npy", "circles.npy", "heatmap.png", "overlay.png",
            "isolines.png", "summary.png", "explanation.json", "circles_raw.png", "circles_better.png",
            "circles_worse.png"} == names
    record = json.loads((tmp_path / "out" / "explanation.json").read_text())
    assert record["seed"] == 2 and record["method"]["parameters"]["offset"] == 8
    assert record["model"]["sha256"] == model.sha256 and record["image_file"] == "square.png"
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "saliency.npy"), result.saliency)
    assert not list((tmp_path / "out").glob(".*tmp"))


# --- bad input ----------------------------------------------------------------------------------


def test_segment_of_another_shape(brightness, bright_square):
    with pytest.raises(OnnxplainError, match=r"segment is shaped \(10, 10\) but the model output is \(32, 32\)"):
        explain(OnnxModel(brightness(), device="cpu"), bright_square, segment=np.ones((10, 10)))


def test_empty_reference(brightness):
    with pytest.raises(OnnxplainError, match="is empty, so there is nothing to explain"):
        explain(OnnxModel(brightness(), device="cpu"), np.zeros((32, 32), np.float32))


def test_target_outside_the_output(brightness, bright_square):
    with pytest.raises(OnnxplainError, match="outside the 32x32 output"):
        explain(OnnxModel(brightness(), device="cpu"), bright_square, target=Target.pixels([(40, 1)]))


def test_unknown_method_lists_the_installed(brightness, bright_square):
    with pytest.raises(PluginError, match="unknown method 'nosuch'; installed: .*hdm.*rise"):
        explain(OnnxModel(brightness(), device="cpu"), bright_square, method="nosuch")


class Exploding(Hdm):
    name = "exploding"

    def apply(self, image, masks, fill):
        raise ZeroDivisionError("oops")


class WrongShape(Hdm):
    name = "wrong-shape"

    def apply(self, image, masks, fill):
        return image[None]


class NanScore(ClassScore):
    name = "nan-score"

    def _distance(self, outputs, reference):
        return np.full(len(outputs), np.nan)


def test_a_plugin_that_raises_is_named(brightness, bright_square):
    model = OnnxModel(brightness(), device="cpu")
    with pytest.raises(PluginError, match=r"Exploding.apply \('exploding'\) failed: ZeroDivisionError: oops"):
        explain(model, bright_square, method=Exploding(offset=8))
    with pytest.raises(PluginError, match="'wrong-shape'.apply returned shape"):
        explain(model, bright_square, method=WrongShape(offset=8))
    with pytest.raises(PluginError, match="score 'nan-score' returned .* one finite distance per output"):
        explain(model, bright_square, method=Hdm(offset=8, score=NanScore()))
