"""The testnet generator, the bundled samples, and the bundled model's quality on fresh data."""

import hashlib

import numpy as np
import pytest

from onnxplain import data, testnet
from onnxplain.model import OnnxModel
from onnxplain.scores import dice_coefficient


def digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(tmp_path):
    testnet.write_dataset(tmp_path / "a", 6, seed=11)
    testnet.write_dataset(tmp_path / "b", 6, seed=11)
    testnet.write_dataset(tmp_path / "c", 6, seed=12)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_samples_do_not_depend_on_what_came_before():
    alone = testnet.make_sample(seed=5, index=7)
    in_a_run = list(testnet.generate(8, seed=5))[7]
    np.testing.assert_array_equal(alone.image, in_a_run.image)


@pytest.fixture(scope="module")
def five_hundred():
    return list(testnet.generate(500, seed=2024))


def test_segment_is_the_triangle_exactly_when_the_decider_is_a_circle(five_hundred):
    for sample in five_hundred:
        np.testing.assert_array_equal(sample.segment, sample.shapes["target"])
        target_is_triangle = _looks_like_triangle(sample.shapes["target"])
        assert target_is_triangle == (sample.decider_shape == "circle")
        assert _looks_like_triangle(sample.shapes["distractor"]) != target_is_triangle


def _looks_like_triangle(mask):
    # Told apart by symmetry, independently of how they were drawn: a cross is symmetric top to
    # bottom, an upright triangle is not.
    rows, columns = np.nonzero(mask)
    box = mask[rows.min(): rows.max() + 1, columns.min(): columns.max() + 1]
    return np.mean(box != box[::-1]) > 0.2


def test_shapes_never_overlap_and_stay_in_their_half(five_hundred):
    for sample in five_hundred:
        target, decider, distractor = (sample.shapes[r] for r in ("target", "decider", "distractor"))
        assert not (target & decider).any() and not (target & distractor).any() and not (decider & distractor).any()
        assert not target[:, 120:].any() and not distractor[:, 120:].any() and not decider[:, :120].any()
        assert target.any() and decider.any() and distractor.any()


def test_deciders_are_balanced_and_images_are_in_range(five_hundred):
    circles = sum(s.decider_shape == "circle" for s in five_hundred)
    assert 200 < circles < 300
    for sample in five_hundred[:50]:
        assert sample.image.dtype == np.float32 and 0 <= sample.image.min() and sample.image.max() <= 1
        shapes = sample.shapes["target"] | sample.shapes["decider"] | sample.shapes["distractor"]
        assert (sample.image[~shapes] == 0).all() and (sample.image[shapes] > 0.35).all()


def test_dataset_layout_round_trips(tmp_path):
    folder = testnet.write_dataset(tmp_path / "set", 3, seed=9)
    for index, original in enumerate(testnet.generate(3, seed=9)):
        read = testnet.read_sample(folder, f"{index:06d}.png")
        np.testing.assert_allclose(read.image, original.image, atol=0.5 / 255)
        np.testing.assert_array_equal(read.segment, original.segment)
        assert read.decider_shape == original.decider_shape


def test_bundled_samples_are_the_documented_seed():
    assert len(data.sample_names()) == 12
    for index in (0, 11):
        bundled, fresh = data.load_sample(index), testnet.make_sample(data.SAMPLES_SEED, index)
        np.testing.assert_array_equal(bundled.segment, fresh.segment)
        assert bundled.decider_shape == fresh.decider_shape


def test_bundled_model_segments_fresh_samples(testnet_model):
    samples = list(testnet.generate(50, seed=987_654))  # a seed used neither in training nor held out
    model = OnnxModel(testnet_model, device="cpu", batch_size=25)
    masks = model.predict(np.stack([s.image for s in samples])[..., None]).mask
    dice = [dice_coefficient(masks[i : i + 1], s.segment)[0] for i, s in enumerate(samples)]
    assert np.mean(dice) >= 0.97


def test_bundled_model_is_small_with_a_dynamic_batch(testnet_model):
    model = OnnxModel(testnet_model, device="cpu")
    assert testnet_model.stat().st_size <= 5 * 1024 * 1024
    assert model.input.batch is None and (model.input.height, model.input.width) == (240, 240)
