"""Gradient methods through the PyTorch twin, each checked against an independent computation.

Parity references: Captum's LayerGradCam, IntegratedGradients and Saliency on the original PyTorch
U-Net of testnet (its own module and weights, not the twin), with the same target written here
directly: the mean class probability (or logit) over the model's segment.
"""

import importlib.util
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from test_cli import assert_one_line_error, run

import onnxplain
from onnxplain import data
from onnxplain.errors import OnnxplainError
from onnxplain.model import OnnxModel
from onnxplain.targets import Target

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

from onnxplain_torch import gradients  # noqa: E402
from onnxplain_torch import unet as unets  # noqa: E402
from onnxplain_torch.twin import TorchTwin  # noqa: E402
from onnxplain_torch.weights import WEIGHTS_PATH, load_weights  # noqa: E402

GRADIENT_METHODS = ("saliency", "integrated-gradients", "smoothgrad", "deeplift", "grad-cam", "grad-cam++",
                    "guided-grad-cam")


@pytest.fixture(scope="module")
def testnet():
    model = OnnxModel(data.testnet_model_path())
    sample = data.load_sample(0)
    unet = load_weights(unets.testnet_unet(), WEIGHTS_PATH).eval()
    for module in unet.modules():
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False  # Captum's layer hooks read the layer's output after the next op
    return model, model.check_image(sample.image), unet


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def segment_signal(unet, region: np.ndarray, logit: bool):
    """Images (n, 1, H, W) -> mean class probability (or logit) over `region`, written independently."""
    pixels = torch.from_numpy(region)

    def signal(x):
        out = unet(x)[:, 0]
        out = out if logit else torch.sigmoid(out)
        return out[:, pixels].mean(dim=1)

    return signal


def test_twin_equals_onnxruntime_on_testnet_and_an_op_zoo(tmp_path, testnet):
    from onnxplain_torch.export import export_module

    model, image, _ = testnet
    x = np.stack([image, image[::-1]]).transpose(0, 3, 1, 2).copy()
    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = TorchTwin(onnx.load(str(model.path)))(torch.from_numpy(x)).numpy()
    assert np.abs(got - expected).max() < 1e-4

    class Zoo(torch.nn.Module):  # ops that real segmentation networks use beyond testnet's
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 6, 3, stride=2, padding=1)
            self.norm = torch.nn.BatchNorm2d(6).eval()
            self.depthwise = torch.nn.Conv2d(6, 6, 3, padding=2, dilation=2, groups=6)
            self.up = torch.nn.ConvTranspose2d(6, 4, 2, stride=2)
            self.head = torch.nn.Conv2d(8, 2, 1)

        def forward(self, x):
            y = torch.nn.functional.hardswish(self.norm(self.conv(x)))
            y = torch.nn.functional.leaky_relu(self.depthwise(y), 0.1) * torch.sigmoid(y.mean((2, 3), keepdim=True))
            y = torch.nn.functional.avg_pool2d(torch.clamp(y, -1, 3), 3, stride=1, padding=1)
            z = torch.nn.functional.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
            y = torch.cat([self.up(y), torch.tanh(z[:, :4])], dim=1)
            return torch.softmax(self.head(y), dim=1)

    path = tmp_path / "zoo.onnx"
    example = torch.rand(2, 3, 32, 48)
    export_module(Zoo().eval(), example, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: example.numpy()})[0]
    with torch.no_grad():
        got = TorchTwin(onnx.load(str(path)))(example).numpy()
    assert np.abs(got - expected).max() < 1e-5


@pytest.mark.parametrize("logit", [False, True])
def test_grad_cam_equals_captum_layer_grad_cam(testnet, logit):
    model, image, unet = testnet
    for layer, module in (("relu_18", unet.decoder[3][5]), ("relu_9", unet.encoder[4][5])):
        attr = onnxplain.create_method("grad-cam", layer=layer, logit=logit).attribute(model, image)
        region = attr.segment
        captum = captum_attr.LayerGradCam(segment_signal(unet, region, logit), module)
        x = torch.from_numpy(image.transpose(2, 0, 1)[None].copy())
        reference = captum.attribute(x, relu_attributions=True)[0, 0].detach().double().numpy()
        ours = attr.arrays["layer_map"]
        assert ours.shape == reference.shape
        assert relative_error(ours, reference) < 1e-4, (layer, logit)


def test_integrated_gradients_and_saliency_equal_captums(testnet):
    model, image, unet = testnet
    x = torch.from_numpy(image.transpose(2, 0, 1)[None].copy())
    ig = onnxplain.create_method("integrated-gradients", steps=32).attribute(model, image)
    signal = segment_signal(unet, ig.segment, logit=False)
    reference = captum_attr.IntegratedGradients(signal).attribute(x, baselines=torch.zeros_like(x), n_steps=32,
                                                                  method="gausslegendre")
    reference = reference[0].detach().numpy().transpose(1, 2, 0)
    assert relative_error(ig.arrays["attributions"], reference) < 1e-4
    completeness = ig.record["completeness"]
    assert completeness["sum"] == pytest.approx(float(reference.sum(dtype=np.float64)), rel=1e-4)

    saliency = onnxplain.create_method("saliency").attribute(model, image)
    reference = captum_attr.Saliency(signal).attribute(x.clone().requires_grad_(True), abs=True)
    reference = reference[0].detach().numpy().transpose(1, 2, 0)
    assert relative_error(np.abs(saliency.arrays["gradient"]), reference) < 1e-4
    np.testing.assert_allclose(saliency.map, np.abs(saliency.arrays["gradient"]).max(axis=-1))


@pytest.fixture
def relu_net(tmp_path):
    """A small ReLU network exported to ONNX, and an image for it."""
    from onnxplain_torch.export import export_module

    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3, padding=1),
                              torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1)).eval()
    path = tmp_path / "relu.onnx"
    export_module(net, torch.rand(1, 1, 24, 24), path)
    return OnnxModel(path), np.random.default_rng(0).random((24, 24, 1), dtype=np.float32)


def test_integrated_gradients_sum_to_the_score_difference(relu_net):
    # Completeness (Sundararajan et al.'s axiom) holds as the quadrature converges; testnet's score is
    # so uneven along the path that it takes ~512 steps there (the record says how far a run is).
    model, image = relu_net
    record = onnxplain.create_method("integrated-gradients", steps=256, logit=True).attribute(
        model, image, Target.box(4, 4, 20, 20)).record["completeness"]
    assert record["sum"] == pytest.approx(record["score_difference"], rel=0.01)


def test_deeplift_sums_to_the_score_difference_on_a_relu_network(relu_net):
    model, image = relu_net
    attr = onnxplain.create_method("deeplift", logit=True).attribute(model, image, Target.box(4, 4, 20, 20))
    assert attr.record["gradient_only_ops"] == []
    assert attr.record["convergence_delta"] < 1e-4
    assert float(attr.map.sum()) == pytest.approx(float(attr.values[1] - attr.values[0]), abs=1e-4)


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_every_gradient_method_runs_from_the_command_line(runner, tmp_path, name):
    image = data.testnet_model_path().parent / "samples" / "images" / "000000.png"
    out = tmp_path / "out"
    result = run(runner, "explain", data.testnet_model_path(), image, "--method", name, "--out", out)
    assert result.exit_code == 0, result.output
    saliency = np.load(out / "saliency.npy")
    assert saliency.shape == (240, 240) and np.isfinite(saliency).all() and saliency.max() > saliency.min()
    record = json.loads((out / "explanation.json").read_text())
    assert record["method"]["name"] == name and record["twin"]["max_abs_difference"] < 1e-4


def test_same_seed_same_smoothgrad(testnet):
    model, image, _ = testnet
    first = onnxplain.create_method("smoothgrad", samples=4, seed=3).attribute(model, image).map
    again = onnxplain.create_method("smoothgrad", samples=4, seed=3).attribute(model, image).map
    other = onnxplain.create_method("smoothgrad", samples=4, seed=4).attribute(model, image).map
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_an_op_without_a_twin_is_named_with_what_still_works(tmp_path):
    nodes = [helper.make_node("Relu", ["image"], ["r"]), helper.make_node("Einsum", ["r", "r"], ["logits"],
                                                                          equation="nchw,nchw->nchw")]
    graph = helper.make_graph(nodes, "einsum", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                               ["n", 1, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 1, 16, 16])])
    path = tmp_path / "einsum.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(path))
    image = np.random.default_rng(0).random((16, 16, 1), dtype=np.float32)
    with pytest.raises(OnnxplainError, match="Einsum.*occlusion.*score-cam"):
        onnxplain.create_method("saliency").attribute(OnnxModel(path), image)


def test_a_layer_without_spatial_axes_is_refused(testnet):
    model, image, _ = testnet
    flat = next(layer.name for layer in model.layers if len(layer.shape or ()) == 4 and layer.shape[2:] == (1, 1))
    with pytest.raises(OnnxplainError, match="no spatial axes"):
        onnxplain.create_method("grad-cam", layer=flat).attribute(model, image)


def test_gradient_methods_without_torch_say_how_to_install(monkeypatch, runner, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(OnnxplainError, match=r'needs torch; install it with: pip install "onnxplain\[torch\]"'):
        gradients.GradCam()
    out = tmp_path / "out"
    result = run(runner, "explain", data.testnet_model_path(), data.testnet_model_path().parent / "samples" / "images"
                 / "000000.png", "--method", "grad-cam", "--out", out)
    assert_one_line_error(result, "needs torch", "onnxplain[torch]", "occlusion")
    assert not out.exists()


BIG = 2**62


def one_graph(tmp_path, nodes, shape, *, out_shape=None, initializers=(), opset=18, out_type=TensorProto.FLOAT):
    """An ONNX file of `nodes` from input 'x' (float, `shape`) to output 'y'."""
    graph = helper.make_graph(nodes, "ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", out_type, out_shape)], initializer=list(initializers))
    path = tmp_path / f"ops{len(list(tmp_path.iterdir()))}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9), str(path))
    return path


def ints(name, values):
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


TWIN_CASES = {
    # Shape arithmetic as exporters write it: a scalar Gather from the end, integer division.
    "gather-scalar-div": ([helper.make_node("Shape", ["x"], ["s"]),
                           helper.make_node("Gather", ["s", "i"], ["w"], axis=0),
                           helper.make_node("Div", ["w", "two"], ["h"]),
                           helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT)],
                          [helper.make_tensor("i", TensorProto.INT64, [], [-1]),
                           helper.make_tensor("two", TensorProto.INT64, [], [2])], 18),
    "slice-flip": ([helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])],
                   [ints("st", [-1]), ints("en", [-BIG]), ints("ax", [3]), ints("sp", [-1])], 18),
    "slice-backwards-from-negative": ([helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])],
                                      [ints("st", [-2]), ints("en", [0]), ints("ax", [3]), ints("sp", [-2])], 18),
    "softmax-opset-11": ([helper.make_node("Softmax", ["x"], ["y"])], [], 11),
    "log-softmax-opset-11": ([helper.make_node("LogSoftmax", ["x"], ["y"], axis=1)], [], 11),
    "resize-nearest-half-pixel-down": ([helper.make_node("Resize", ["x", "", "", "sz"], ["y"], mode="nearest")],
                                       [ints("sz", [1, 3, 3, 2])], 18),
    "resize-linear-by-1.5": ([helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="linear")],
                             [helper.make_tensor("sc", TensorProto.FLOAT, [4], [1, 1, 1.5, 1.5])], 18),
    "flatten-last-axis": ([helper.make_node("Flatten", ["x"], ["y"], axis=-1)], [], 18),
    "clip-unbounded": ([helper.make_node("Clip", ["x"], ["y"])], [], 18),
}


@pytest.mark.parametrize("case", TWIN_CASES)
def test_twin_replays_ops_as_onnxruntime_does(tmp_path, case):
    nodes, initializers, opset = TWIN_CASES[case]
    path = one_graph(tmp_path, nodes, [1, 3, 6, 5], initializers=initializers, opset=opset)
    x = np.random.default_rng(0).normal(size=(1, 3, 6, 5)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    with torch.no_grad():
        got = TorchTwin(onnx.load(str(path)))(torch.from_numpy(x)).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.fixture
def batch_one_model(tmp_path):
    """A file exported for batch 1 whose Reshape bakes that batch in: softmax over all pixels of an image."""
    nodes = [helper.make_node("Reshape", ["x", "flat"], ["f"]), helper.make_node("Softmax", ["f"], ["p"], axis=1),
             helper.make_node("Reshape", ["p", "back"], ["r"]), helper.make_node("Mul", ["r", "k"], ["y"])]
    initializers = [ints("flat", [1, -1]), ints("back", [1, 1, 12, 12]),
                    helper.make_tensor("k", TensorProto.FLOAT, [], [144.0])]
    path = one_graph(tmp_path, nodes, [1, 1, 12, 12], out_shape=[1, 1, 12, 12], initializers=initializers)
    image = np.random.default_rng(1).random((12, 12, 1), dtype=np.float32)
    return OnnxModel(path, activation="sigmoid"), image


@pytest.mark.parametrize("name", ["smoothgrad", "integrated-gradients", "saliency", "grad-cam"])
def test_a_file_fixed_to_batch_one_gives_the_same_map_whatever_the_batch_size(batch_one_model, name):
    model, image = batch_one_model
    params = {"smoothgrad": {"samples": 5}, "integrated-gradients": {"steps": 5}}.get(name, {})
    if name == "grad-cam":
        params = {"layer": "r"}
    target = Target.box(0, 0, 6, 6)
    wide = onnxplain.create_method(name, **params).attribute(model, image, target, batch_size=16)
    narrow = onnxplain.create_method(name, **params).attribute(model, image, target, batch_size=1)
    np.testing.assert_allclose(wide.map, narrow.map, rtol=1e-5, atol=1e-9)
    assert np.ptp(wide.map) > 0


def test_deeplift_on_a_fixed_batch_file_says_what_to_do(batch_one_model):
    model, image = batch_one_model
    with pytest.raises(OnnxplainError, match="exported for a batch of exactly 1; export it with a dynamic batch"):
        onnxplain.create_method("deeplift").attribute(model, image, Target.box(0, 0, 6, 6))


def test_an_empty_target_region_is_refused(brightness):
    model = OnnxModel(brightness(), device="cpu")
    black = np.zeros((32, 32, 1), np.float32)  # the model segments nothing
    with pytest.raises(OnnxplainError, match="empty"):
        onnxplain.create_method("saliency").attribute(model, black)
