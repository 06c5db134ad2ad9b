"""Layers and activation methods on onnxruntime alone: the listing, the activations, Eigen-CAM and Score-CAM."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from scipy.special import softmax
from sklearn.decomposition import PCA
from test_cli import assert_one_line_error, run

from onnxplain import OnnxModel, data, explain
from onnxplain.errors import OnnxplainError
from onnxplain.layers import Layer, find_layer
from onnxplain.resizing import resize_batch

LAYER = "relu_18"  # the testnet U-Net's last feature map, which its 1x1 head reads


@pytest.fixture(scope="module")
def model(testnet_model):
    return OnnxModel(testnet_model)


@pytest.fixture(scope="module")
def image():
    return data.load_sample(0).image[..., None]


def test_the_default_layer_is_the_one_the_head_reads(model, runner, testnet_model):
    assert model.layer().name == LAYER and model.layer().shape[1:] == (4, 240, 240)
    listing = run(runner, "layers", testnet_model)
    assert listing.exit_code == 0 and any(line.split()[:2] == ["*", LAYER] for line in listing.output.splitlines())
    assert any(line.split()[:3] == ["b", "relu_9", "Relu"] for line in listing.output.splitlines())  # 15x15


def test_activations_equal_the_graph_cut_at_the_layer(model, image, testnet_model, tmp_path):
    onnx.utils.extract_model(str(testnet_model), str(tmp_path / "cut.onnx"), [model.input.name], [LAYER])
    session = ort.InferenceSession(str(tmp_path / "cut.onnx"), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {model.input.name: model.to_tensor(image[None])})
    np.testing.assert_allclose(model.activations(image[None], LAYER), expected, atol=1e-6)


def test_eigen_cam_is_the_first_principal_component(model, image):
    result = explain(model, image, method="eigen-cam")
    features = model.activations(image[None], LAYER)[0].astype(np.float64)
    component = PCA(n_components=1).fit_transform(features.reshape(len(features), -1).T)[:, 0]
    low = result.arrays["layer_map"].ravel()
    sign = np.sign(np.dot(component, low))
    np.testing.assert_allclose(low, sign * component, rtol=1e-4, atol=1e-4 * np.abs(component).max())
    assert np.corrcoef(low, result.segment.ravel())[0, 1] > 0  # the sign that points at the target region
    assert result.map.shape == image.shape[:2] and result.record["layer"]["name"] == LAYER


def test_score_cam_follows_the_papers_definition(model, image):
    result = explain(model, image, method="score-cam", layer=LAYER)
    features = model.activations(image[None], LAYER)[0].astype(np.float64)
    region = model.predict(image[None]).mask[0]
    scores = []
    for feature in features:  # one channel at a time, as Wang et al. write it
        mask = (feature - feature.min()) / (feature.max() - feature.min())
        upsampled = resize_batch(mask[None].astype(np.float32), image.shape[:2])[0]
        scores.append(model.predict((image * upsampled[..., None])[None]).probability[0][region].mean())
    expected = np.maximum(np.tensordot(softmax(np.array(scores)), features, axes=1), 0)
    np.testing.assert_allclose(result.arrays["layer_map"], expected, rtol=1e-5, atol=1e-6)
    assert len(result.values) == len(features)


def test_an_unknown_layer_is_answered_with_the_nearest_names(runner, testnet_model, tmp_path):
    from PIL import Image

    Image.fromarray((data.load_sample(0).image * 255).astype(np.uint8)).save(tmp_path / "sample.png")
    result = run(runner, "explain", testnet_model, tmp_path / "sample.png", "--method", "score-cam", "-p",
                 "layer=relu_180", "--out", tmp_path / "out")
    assert_one_line_error(result, "the model has no layer 'relu_180'; nearest: relu_18", "(option -p layer=NAME)")
    assert not (tmp_path / "out").exists()


def test_a_layer_without_spatial_axes_is_refused():
    with pytest.raises(OnnxplainError, match="has no spatial axes"):
        find_layer([Layer("pooled", "GlobalAveragePool", ("N", 8, 1, 1))], "pooled")


def test_layers_of_a_file_that_is_no_model(runner, tmp_path):
    (tmp_path / "model.onnx").write_text("not a model")
    assert_one_line_error(run(runner, "layers", tmp_path / "model.onnx"), "is not an ONNX model")


def test_the_rest_of_the_network_runs_on_changed_activations_skip_connections_included(model, image):
    for layer in (LAYER, "relu_5"):  # relu_5 is deep in the encoder: its output also feeds a skip connection
        features = model.activations(image[None], layer)
        same = model.predict_with_layer(image[None], layer, features).probability
        np.testing.assert_allclose(same, model.predict(image[None]).probability, atol=1e-6)
        assert np.abs(model.predict_with_layer(image[None], layer, 0 * features).probability - same).max() > 0.1


def test_ablation_cam_follows_the_papers_definition(model, image, testnet_model, tmp_path):
    result = explain(model, image, method="ablation-cam", layer=LAYER)
    onnx.utils.extract_model(str(testnet_model), str(tmp_path / "head.onnx"), [LAYER], [model.output_name])
    head = ort.InferenceSession(str(tmp_path / "head.onnx"), providers=["CPUExecutionProvider"])
    features = model.activations(image[None], LAYER)
    region = model.predict(image[None]).mask[0]

    def score(activations):
        (logits,) = head.run(None, {LAYER: activations})
        return (1 / (1 + np.exp(-logits[0, 0].astype(np.float64))))[region].mean()

    whole = score(features)
    weights = []
    for k in range(features.shape[1]):
        ablated = features.copy()
        ablated[:, k] = 0
        weights.append((whole - score(ablated)) / whole)
    expected = np.maximum(np.tensordot(np.array(weights), features[0].astype(np.float64), axes=1), 0)
    np.testing.assert_allclose(result.arrays["layer_map"], expected, rtol=1e-4, atol=1e-5)
