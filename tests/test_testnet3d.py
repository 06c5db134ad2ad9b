"""The 3-D testnet: seeded volumes whose segment is decided by a shape that is never segmented."""

import numpy as np
import pytest
from scipy import ndimage

from onnxplain.errors import OnnxplainError
from onnxplain.testnet3d import SIZE, generate_volumes, make_volume


@pytest.fixture(scope="module")
def volumes():
    return list(generate_volumes(40, seed=5))


def test_the_same_seed_gives_the_same_volumes_and_another_seed_others():
    first, again, other = make_volume(5, 3), make_volume(5, 3), make_volume(6, 3)
    np.testing.assert_array_equal(first.image, again.image)
    assert not np.array_equal(first.image, other.image)


def test_the_decider_sets_which_shape_is_segmented(volumes):
    assert {v.decider_shape for v in volumes} == {"sphere", "cube"}
    for sample in volumes:
        shapes = sample.shapes
        np.testing.assert_array_equal(sample.segment, shapes["target"])
        # Three shapes apart from each other: the decider in the second half, the others in the first.
        assert not (shapes["target"] & shapes["distractor"]).any()
        assert shapes["decider"][SIZE // 2:].any() and not shapes["decider"][: SIZE // 2].any()
        assert not shapes["target"][SIZE // 2:].any() and not shapes["distractor"][SIZE // 2:].any()
        # Each shape is one connected body, and the volume is bright exactly on them.
        for mask in shapes.values():
            assert ndimage.label(mask)[1] == 1
        union = shapes["target"] | shapes["decider"] | shapes["distractor"]
        assert (sample.image[union] >= 0.4).all() and not sample.image[~union].any()


def test_the_target_is_the_cross_with_a_cube_and_the_pyramid_with_a_sphere(volumes):
    for sample in volumes:
        target = sample.shapes["target"]
        box = target[np.ix_(*[np.flatnonzero(target.any(axis=tuple(a for a in range(3) if a != axis)))
                              for axis in range(3)])]
        # A pyramid narrows along its last axis; a cross is symmetric: its first and last layers match.
        is_pyramid = box[..., 0].sum() > 2 * box[..., -1].sum()
        assert is_pyramid == (sample.decider_shape == "sphere")


def test_bad_arguments_say_why():
    with pytest.raises(OnnxplainError, match="non-negative"):
        make_volume(-1)
    with pytest.raises(OnnxplainError, match="count must be at least 1"):
        list(generate_volumes(0, seed=1))


def test_the_command_line_writes_nifti_volumes(runner, tmp_path):
    import nibabel

    from onnxplain.cli import main
    from onnxplain.volumes import read_volume

    result = runner.invoke(main, ["testnet", "generate", "--3d", "--count", "3", "--seed", "5", "--out",
                                  str(tmp_path / "volumes")])
    assert result.exit_code == 0, result.output
    assert "wrote 3 3-D testnet volumes (seed 5)" in result.output
    volume = read_volume(tmp_path / "volumes" / "images" / "000002.nii.gz")
    np.testing.assert_allclose(volume.array, make_volume(5, 2).image)
    segment = nibabel.load(tmp_path / "volumes" / "segments" / "000002.nii.gz").get_fdata()
    np.testing.assert_array_equal(segment > 0.5, make_volume(5, 2).segment)
    rows = (tmp_path / "volumes" / "samples.csv").read_text().splitlines()
    assert rows[0] == "name,decider_shape,seed,index" and rows[3].startswith("000002.nii.gz,")


def test_the_bundled_3d_unet_segments_fresh_volumes(volumes):
    from onnxplain import data
    from onnxplain.model import raw_runner

    run = raw_runner(data.testnet3d_model_path())
    dice = {"sphere": [], "cube": []}
    for sample in volumes:  # seed 5: neither the training stream (seed 0) nor its held-out volumes
        predicted = run(sample.image[None, None])[0][0, 0] > 0
        truth = sample.segment
        dice[sample.decider_shape].append(2 * (predicted & truth).sum() / (predicted.sum() + truth.sum()))
    # Each decider picks its own shape: Dice >= 0.95 with spheres and with cubes alike.
    assert min(np.mean(scores) for scores in dice.values()) >= 0.95, {k: np.mean(v) for k, v in dice.items()}
    assert data.testnet3d_model_path().stat().st_size <= 2 * 2**20
