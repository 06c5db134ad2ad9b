"""Patch-based inference: patches cover the volume, blend with a Gaussian, and equal whole-volume inference
where the model allows both."""

import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxplain.errors import OnnxplainError
from onnxplain.model import raw_runner
from onnxplain.patches import gaussian_importance, patch_starts, sliding_window


@pytest.mark.parametrize("side,patch,overlap", [(100, 48, 0.5), (61, 16, 0.5), (48, 48, 0.5), (50, 16, 0.0),
                                                (37, 16, 0.75)])
def test_patches_cover_every_voxel_with_the_overlap_asked_for(side, patch, overlap):
    starts = patch_starts(side, patch, overlap)
    assert starts[0] == 0 and starts[-1] == side - patch and starts == sorted(set(starts))
    covered = np.zeros(side, bool)
    for start in starts:
        covered[start:start + patch] = True
    assert covered.all()
    assert all(b - a <= max(1, int(patch * (1 - overlap))) for a, b in itertools.pairwise(starts))


def test_the_importance_map_peaks_at_the_centre_and_never_vanishes():
    weights = gaussian_importance((16, 17, 9))
    assert weights.shape == (16, 17, 9) and weights.max() == 1.0 and weights.min() > 0
    np.testing.assert_allclose(weights, weights[::-1, ::-1, ::-1], atol=1e-7)  # symmetric about the centre
    assert weights[8, 8, 4] > weights[0, 8, 4] and weights[7, 8, 4] == weights[8, 8, 4]


def pointwise_model(path):
    """A 3-D model every output voxel of which depends on its own input voxel only: (N, 1, D, H, W) -> (N, 2, D, H, W),
    any spatial size, so that a patch's output equals the whole volume's there."""
    weight = numpy_helper.from_array(np.array([2.0, -0.5], np.float32).reshape(2, 1, 1, 1, 1), "weight")
    bias = numpy_helper.from_array(np.array([0.25, 1.0], np.float32), "bias")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "weight", "bias"], ["y"]), helper.make_node("Sigmoid", ["y"], ["z"])],
        "pointwise", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "D", "H", "W"])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 2, "D", "H", "W"])], initializer=[weight, bias])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_patch_inference_equals_whole_volume_inference_where_the_model_allows_both(tmp_path):
    run = raw_runner(pointwise_model(tmp_path / "pointwise.onnx"))
    volume = np.random.default_rng(0).random((1, 50, 37, 61), dtype=np.float32)  # no side a multiple of the patch
    whole = run(volume[None])[0][0]
    calls = []

    def predict(patches):
        calls.append(len(patches))
        return run(patches)[0]

    patched = sliding_window(volume, (16, 16, 16), predict, batch_size=5)
    assert patched.shape == whole.shape == (2, 50, 37, 61)
    np.testing.assert_allclose(patched, whole, atol=1e-4)
    assert max(calls) == 5 and sum(calls) == 6 * 4 * 7  # patches per axis: 50 -> 6, 37 -> 4, 61 -> 7


def test_blending_weighs_each_patch_by_the_importance_map():
    # Each patch predicts its own index everywhere: a voxel gets the importance-weighted mean of the indices.
    volume = np.zeros((1, 24), np.float32)
    counter = iter(range(100))
    patched = sliding_window(volume, (16,), lambda patches: np.stack([np.full((1, 16), next(counter), np.float32)
                                                                      for _ in patches]), overlap=0.5, batch_size=1)
    starts = patch_starts(24, 16, 0.5)
    weights = gaussian_importance((16,))
    expected = np.zeros(24)
    total = np.zeros(24)
    for index, start in enumerate(starts):
        expected[start:start + 16] += index * weights
        total[start:start + 16] += weights
    np.testing.assert_allclose(patched[0], expected / total, atol=1e-6)


@pytest.mark.parametrize("volume,patch,predict,fragment", [
    (np.zeros((1, 8, 40, 40)), (16, 16, 16), None, "the volume is 8 voxels along an axis where the patch is 16"),
    (np.zeros((1, 40, 40)), (16, 16, 16), None, "the patch (16, 16, 16) has 3 axes, the volume 2 spatial axes"),
    (np.zeros((1, 20, 20, 20)), (16, 16, 16), lambda p: p[:, :, :8], "the model must keep the patch's spatial size"),
])
def test_bad_patching_says_why(volume, patch, predict, fragment):
    with pytest.raises(OnnxplainError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        sliding_window(volume, patch, predict or (lambda p: p))
