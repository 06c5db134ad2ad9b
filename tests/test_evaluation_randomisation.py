"""The model-randomisation sanity check: fresh weights must change a map that explains the model."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from onnxplain import cli, data
from onnxplain.api import create_method
from onnxplain.errors import OnnxplainError
from onnxplain.evaluation import EvaluationContext
from onnxplain.evaluation.randomisation import ModelRandomisation, model_randomisation, randomisation_check
from onnxplain.evaluation.reinitialise import load_model_proto, reinitialise, weight_layers
from onnxplain.method import make_baseline
from onnxplain.model import OnnxModel


def weighted_quadrant_model(path: Path) -> Path:
    """The quadrant model with learnt-looking weights: logit ``20 * (x . w + b - 0.25)``, where ``w``
    averages the top-left quadrant of a 32x32 image (a Gemm); the logit fills the output."""
    weights = np.zeros((32, 32), np.float32)
    weights[:16, :16] = 1 / 256
    inits = [
        numpy_helper.from_array(np.array([-1, 1024], np.int64), "flat_shape"),
        numpy_helper.from_array(weights.reshape(1024, 1), "w"),
        numpy_helper.from_array(np.zeros(1, np.float32), "b"),
        numpy_helper.from_array(np.array([-1, 1, 1, 1], np.int64), "logit_shape"),
        numpy_helper.from_array(np.array(0.25, np.float32), "threshold"),
        numpy_helper.from_array(np.array(20.0, np.float32), "gain"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("Reshape", ["x", "flat_shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w", "b"], ["level"]),
        helper.make_node("Reshape", ["level", "logit_shape"], ["level4"]),
        helper.make_node("Sub", ["level4", "threshold"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], ["z"]),
        helper.make_node("Mul", ["x", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "z"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "weighted-quadrant",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 32, 32])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


IMAGE = np.full((32, 32, 1), 0.3, np.float32)
IMAGE[:16, :16] = 0.35


@pytest.fixture
def weighted(tmp_path):
    return OnnxModel(weighted_quadrant_model(tmp_path / "weighted.onnx"), device="cpu", batch_size=64)


def occlusion():
    # Small windows: a map of 256 independent blocks, whose chance correlation with another stays small.
    return create_method("occlusion", window=2, stride=2)


def test_full_randomisation_changes_an_occlusion_map_and_the_unchanged_model_does_not(weighted):
    result = model_randomisation(weighted, IMAGE, occlusion(), cascade_steps=1)
    steps = {step.label: step for step in result.steps}
    assert list(steps) == ["unchanged", "cascade 1/1", "full"]
    assert steps["unchanged"].spearman == pytest.approx(1.0) and steps["unchanged"].ssim == pytest.approx(1.0)
    assert result.abs_spearman_full < 0.3 and abs(steps["cascade 1/1"].spearman) < 0.3
    assert result.values()["model_randomisation_abs_spearman"] == result.abs_spearman_full
    assert not result.notes()


def test_same_seed_same_numbers_other_seed_other_weights(weighted):
    first = model_randomisation(weighted, IMAGE, occlusion(), cascade_steps=0, control=False, seed=4).values()
    assert model_randomisation(weighted, IMAGE, occlusion(), cascade_steps=0, control=False, seed=4).values() == first
    other = model_randomisation(weighted, IMAGE, occlusion(), cascade_steps=0, control=False, seed=5).values()
    assert other != first


def test_weights_are_redrawn_from_the_output_down_and_other_constants_kept():
    proto = load_model_proto(data.testnet_model_path())
    layers = weight_layers(proto)
    assert len(layers) == 24 and layers[0].weight == "encoder.0.0.weight" and layers[-1].weight == "head.weight"
    top = layers[::-1]
    two, three = (reinitialise(proto, top[:count], seed=[0, 0]) for count in (2, 3))
    arrays = [{t.name: numpy_helper.to_array(t) for t in m.graph.initializer} for m in (proto, two, three)]
    original, after_two, after_three = arrays
    for name in (top[0].weight, top[0].bias, top[1].weight):
        assert not np.array_equal(after_two[name], original[name])
        np.testing.assert_array_equal(after_three[name], after_two[name])  # a cascade keeps what it drew
    assert not np.array_equal(after_three[top[2].weight], original[top[2].weight])
    for name, array in original.items():
        assert after_three[name].shape == array.shape and after_three[name].dtype == array.dtype
        if name not in {n for layer in top[:3] for n in (layer.weight, layer.bias)}:
            np.testing.assert_array_equal(after_three[name], array)  # shape tensors, other layers


def test_non_weight_constants_are_kept_in_the_weighted_quadrant_model(tmp_path):
    proto = load_model_proto(weighted_quadrant_model(tmp_path / "w.onnx"))
    (layer,) = weight_layers(proto)
    assert (layer.weight, layer.bias, layer.fan_in) == ("w", "b", 1024)
    fresh = {t.name: numpy_helper.to_array(t) for t in reinitialise(proto, [layer], seed=0).graph.initializer}
    kept = {"flat_shape": [-1, 1024], "logit_shape": [-1, 1, 1, 1], "threshold": 0.25, "gain": 20.0}
    for name, value in kept.items():
        np.testing.assert_array_equal(fresh[name], value)
    assert abs(fresh["w"].std() - np.sqrt(2 / 1024)) < 0.1 * np.sqrt(2 / 1024)  # He-normal


def test_weights_written_as_constant_nodes_are_redrawn_too(tmp_path):
    # Some exporters (paddle2onnx, say) write every weight as a Constant node instead of an initializer.
    proto = load_model_proto(weighted_quadrant_model(tmp_path / "w.onnx"))
    graph = proto.graph
    for name in ("w", "b"):
        (tensor,) = [t for t in graph.initializer if t.name == name]
        graph.node.insert(0, helper.make_node("Constant", [], [name], value=tensor))
        graph.initializer.remove(tensor)
    (layer,) = weight_layers(proto)
    assert (layer.weight, layer.bias) == ("w", "b")
    fresh = reinitialise(proto, [layer], seed=0)
    values = {node.output[0]: numpy_helper.to_array(node.attribute[0].t) for node in fresh.graph.node[:2]}
    assert values["w"].shape == (1024, 1) and values["w"].std() > 0.02 and values["b"].any()
    onnx.checker.check_model(fresh)


def test_a_randomised_testnet_model_still_gives_finite_outputs(tmp_path):
    model = OnnxModel(data.testnet_model_path(), device="cpu")
    proto = load_model_proto(model.path)
    path = tmp_path / "random.onnx"
    onnx.save(reinitialise(proto, weight_layers(proto)[::-1], seed=[0, 1]), str(path))
    output = model.reopen(path).predict(data.load_sample(0).image[None, :, :, None])
    assert np.isfinite(output.probability).all()


def test_a_model_without_weights_says_so(quadrant):
    model = OnnxModel(quadrant, device="cpu")
    with pytest.raises(OnnxplainError, match="has no Conv, ConvTranspose, Gemm or MatMul weights stored in the graph"):
        model_randomisation(model, IMAGE, occlusion())


def test_a_degenerate_randomised_model_gives_nan_and_a_note(weighted):
    saliency = np.arange(32 * 32, dtype=float).reshape(32, 32)

    def nan_output(model, image):
        raise OnnxplainError("the model output 'y' contains NaN or infinite values")

    broken = randomisation_check(weighted, IMAGE, saliency, nan_output, cascade_steps=1, control=False)
    assert all(np.isnan(step.spearman) for step in broken.steps)
    assert "could not be explained (the model output 'y' contains NaN" in broken.notes()[0]
    flat = randomisation_check(weighted, IMAGE, saliency, lambda model, image: np.zeros((32, 32)), cascade_steps=0,
                               control=False)
    assert np.isnan(flat.abs_spearman_full) and "map is constant" in flat.notes()[0]
    constant_original = randomisation_check(weighted, IMAGE, np.zeros((32, 32)), lambda m, i: saliency)
    assert "original map is constant" in constant_original.notes()[0]


def test_the_metric_reports_values_and_notes_through_the_context(weighted):
    baseline = make_baseline(weighted, IMAGE)
    context = EvaluationContext(model=weighted, image=baseline.image, reference=baseline.reference,
                                explain_on=lambda model, image: np.ones((32, 32)))
    result = ModelRandomisation(cascade_steps=0, control=False).evaluate(context, np.eye(32))
    assert np.isnan(result.values["model_randomisation_abs_spearman"]) and "full: " in result.notes[0]
    without = EvaluationContext(model=weighted, image=baseline.image, reference=baseline.reference)
    with pytest.raises(OnnxplainError, match="needs the explainer in the context; it cannot score saved maps"):
        ModelRandomisation().evaluate(without, np.eye(32))


def test_evaluate_command_runs_the_check(runner, tmp_path):
    model = weighted_quadrant_model(tmp_path / "weighted.onnx")
    Image.fromarray((IMAGE[:, :, 0] * 255).round().astype(np.uint8)).save(tmp_path / "lit.png")
    result = runner.invoke(cli.main, ["evaluate", str(model), str(tmp_path / "lit.png"), "--method", "occlusion",
                                      "-p", "occlusion:window=2", "-p", "occlusion:stride=2",
                                      "--metric", "model-randomisation",
                                      "--metric-param", "model-randomisation:cascade_steps=1",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "out" / "evaluation.json").read_text())["rows"]
    assert row["model_randomisation_spearman[unchanged]"] == pytest.approx(1.0)
    assert row["model_randomisation_abs_spearman"] < 0.3
