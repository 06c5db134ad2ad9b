"""3-D models: NCDHW and NDHWC inputs, patch-based inference inside OnnxModel, reuse of unchanged patches,
and the intensity normalisations of medical models."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxplain import data
from onnxplain.errors import OnnxplainError
from onnxplain.model import OnnxModel
from onnxplain.testnet3d import make_volume
from onnxplain.volumes import normalise_intensity


def pointwise_model(path, *, channels_last=False):
    """(N, 1, D, H, W) -> (N, 2, D, H, W), each output voxel from its own input voxel, any size; with
    `channels_last`, the same model taking (N, D, H, W, 1) and giving (N, D, H, W, 2)."""
    weight = numpy_helper.from_array(np.array([2.0, -0.5], np.float32).reshape(2, 1, 1, 1, 1), "weight")
    bias = numpy_helper.from_array(np.array([0.25, 1.0], np.float32), "bias")
    nodes = [helper.make_node("Conv", ["first", "weight", "bias"], ["y"]), helper.make_node("Sigmoid", ["y"], ["z"])]
    shape_in, shape_out = ["N", 1, "D", "H", "W"], ["N", 2, "D", "H", "W"]
    if channels_last:
        nodes = [helper.make_node("Transpose", ["x"], ["first"], perm=[0, 4, 1, 2, 3]), *nodes,
                 helper.make_node("Transpose", ["z"], ["out"], perm=[0, 2, 3, 4, 1])]
        shape_in, shape_out = ["N", "D", "H", "W", 1], ["N", "D", "H", "W", 2]
    else:
        nodes = [helper.make_node("Identity", ["x"], ["first"]), *nodes, helper.make_node("Identity", ["z"], ["out"])]
    graph = helper.make_graph(nodes, "pointwise", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape_in)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape_out)],
                              initializer=[weight, bias])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


@pytest.fixture(scope="module")
def volume():
    return np.random.default_rng(0).random((30, 21, 37, 1), dtype=np.float32)


@pytest.mark.parametrize("channels_last", [False, True])
def test_volume_models_read_their_layout_and_predict_per_voxel(tmp_path, volume, channels_last):
    model = OnnxModel(pointwise_model(tmp_path / "m.onnx", channels_last=channels_last), device="cpu", class_index=1)
    assert model.input.layout == ("NDHWC" if channels_last else "NCDHW")
    assert model.input.spatial == (None, None, None) and model.patch is None
    out = model.predict(volume[None])
    expected = 1 / (1 + np.exp(-(-0.5 * volume[..., 0] + 1.0)))  # class 1's sigmoid, by hand
    assert out.probability.shape == (1, 30, 21, 37)
    np.testing.assert_allclose(out.probability[0], expected, atol=1e-6)
    np.testing.assert_array_equal(out.mask[0], expected > 0.5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_patch_inference_in_the_model_equals_whole_volume_inference(tmp_path, volume, channels_last):
    path = pointwise_model(tmp_path / "m.onnx", channels_last=channels_last)
    whole = OnnxModel(path, device="cpu").predict(volume[None])
    patched = OnnxModel(path, device="cpu", patch=(16, 16, 16), batch_size=3)
    out = patched.predict(volume[None])
    assert patched.spatial_shape == (None, None, None) and patched.serves == {"predictions"}
    np.testing.assert_allclose(out.probability, whole.probability, atol=1e-4)
    assert patched.patch_counts == {"run": 3 * 2 * 4, "reused": 0}  # 30, 21 and 37 voxels in patches of 16, 8 apart


def test_a_perturbed_volume_runs_only_the_patches_it_changed_and_equals_running_them_all():
    model = OnnxModel(data.testnet3d_model_path(), device="cpu", batch_size=4)
    assert model.input.layout == "NCDHW" and model.patch == (48, 48, 48)  # a fixed-size volume model patches itself
    big = np.zeros((72, 72, 48, 1), np.float32)
    big[12:60, 12:60] = make_volume(5, 0).image[..., None]  # a testnet volume in a larger field of view
    model.prepare(big)
    model.predict(big[None])
    assert model.patch_counts == {"run": 4, "reused": 0}  # 72 x 72 x 48 in patches of 48: 2 x 2 x 1
    perturbed = big.copy()
    perturbed[2:6, 2:6, 10:14] = 1.0  # only in the first patch along both long axes
    reused = model.predict(np.stack([perturbed, big]))
    assert model.patch_counts == {"run": 5, "reused": 7}
    fresh = OnnxModel(data.testnet3d_model_path(), device="cpu", reuse_patches=False)
    rerun = fresh.predict(np.stack([perturbed, big]))
    assert fresh.patch_counts == {"run": 8, "reused": 0}
    np.testing.assert_allclose(reused.probability, rerun.probability, atol=1e-5)
    np.testing.assert_array_equal(reused.mask, rerun.mask)


def test_a_fixed_size_volume_model_refuses_a_smaller_volume_and_the_wrong_patch(tmp_path):
    model = OnnxModel(data.testnet3d_model_path(), device="cpu")
    with pytest.raises(OnnxplainError, match="32x48x48 voxels, smaller than the model's patch of 48x48x48; pad"):
        model.check_image(np.zeros((32, 48, 48), np.float32))
    with pytest.raises(OnnxplainError, match="takes inputs of 48x48x48 only"):
        OnnxModel(data.testnet3d_model_path(), device="cpu", patch=(32, 32, 32))
    with pytest.raises(OnnxplainError, match="takes a volume shaped"):
        model.check_image(np.zeros((48, 48), np.float32))
    with pytest.raises(OnnxplainError, match="resize applies to 2-D models"):
        OnnxModel(data.testnet3d_model_path(), device="cpu", resize=True)


def test_a_model_on_patches_serves_no_layer_activations():
    from onnxplain.registry import plugins

    model = OnnxModel(data.testnet3d_model_path(), device="cpu")
    with pytest.raises(OnnxplainError, match="needs the model's activations"):
        plugins.create("method", "eigen-cam").attribute(model, np.zeros((48, 48, 48), np.float32))
    with pytest.raises(OnnxplainError, match="runs on patches"):
        model.activations(np.zeros((1, 48, 48, 48, 1), np.float32), "any layer")


def test_intensity_normalisations_follow_their_definitions():
    rng = np.random.default_rng(1)
    ct = rng.normal(40, 300, (20, 20, 20)).astype(np.float32)  # Hounsfield-like values
    zscored, record = normalise_intensity(ct, "zscore")
    np.testing.assert_allclose(zscored, (ct - ct.mean()) / ct.std(), rtol=1e-4, atol=1e-4)
    assert record["mode"] == "zscore" and record["std"] == pytest.approx(ct.std(), rel=1e-5)
    windowed, record = normalise_intensity(ct, "window", window=(40, 400))
    np.testing.assert_allclose(windowed, np.clip((ct + 160) / 400, 0, 1), atol=1e-6)  # level 40, width 400
    clipped, record = normalise_intensity(ct, "percentile", percentiles=(1, 99))
    low, high = np.percentile(ct, [1, 99])
    np.testing.assert_allclose(clipped, np.clip((ct - low) / (high - low), 0, 1), atol=1e-6)
    assert clipped.min() == 0 and clipped.max() == 1 and 0.005 <= (clipped == 0).mean() <= 0.015
    assert normalise_intensity(ct, "none")[0] is not None
    for mode, options, message in [("zscore", {}, "constant"), ("window", {}, "a window is a level"),
                                   ("percentile", {"percentiles": (90, 10)}, "low < high")]:
        with pytest.raises(OnnxplainError, match=message):
            normalise_intensity(np.ones((4, 4, 4)) if mode == "zscore" else ct, mode, **options)


def test_patch_aware_hdm_gives_the_map_of_whole_volume_reruns():
    from onnxplain.perturbation.hdm import Hdm

    field = np.zeros((72, 72, 48), np.float32)  # a testnet volume in a field of view of 2 x 2 x 1 patches
    field[12:60, 12:60] = make_volume(5, 0).image
    method = Hdm(circle_size=16, offset=16)
    reused_model = OnnxModel(data.testnet3d_model_path(), device="cpu", batch_size=8)
    rerun_model = OnnxModel(data.testnet3d_model_path(), device="cpu", batch_size=8, reuse_patches=False)
    reused, rerun = method.attribute(reused_model, field), method.attribute(rerun_model, field)
    assert reused.segment.sum() > 500  # the model segments its target in the larger field
    np.testing.assert_allclose(reused.map, rerun.map, atol=1e-5)
    np.testing.assert_allclose(reused.values, rerun.values, atol=1e-5)
    assert np.abs(reused.map).max() > 0.1
    spheres = 5 * 5 * 3
    assert rerun.record["patches"] == {"run": 4 * spheres, "reused": 0, "passes_saved": 0.0}
    assert reused.record["patches"]["run"] + reused.record["patches"]["reused"] == 4 * spheres
    assert reused.record["patches"]["passes_saved"] > 0.3  # a sphere reaches one to four of the four patches


def test_int8_is_calibrated_on_patches_when_the_volume_is_larger_than_the_model_takes():
    field = np.zeros((72, 72, 48), np.float32)
    field[12:60, 12:60] = make_volume(5, 0).image
    model = OnnxModel(data.testnet3d_model_path(), device="cpu", precision="int8", cache=False)
    model.prepare(field[..., None])  # calibrating on the whole 72 x 72 x 48 volume would not fit the 48^3 input
    check = model.describe()["precision"]["check"]
    assert check["dice"] >= 0.95 and check["correlation"] >= 0.95
    assert model.predict(field[None, ..., None]).mask.sum() > 500
