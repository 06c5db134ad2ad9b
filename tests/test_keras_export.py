"""The Keras exporter: a small Keras network trained on testnet, exported, checked and explained; clear failures."""

import json
import warnings

import numpy as np
import onnx
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras", minversion="3.12")
pytest.importorskip("tf2onnx")

from onnxplain_keras import plugin  # noqa: E402  (after the skips: it needs TensorFlow to be worth testing)
from onnxplain_keras.export import ExportError, export_keras  # noqa: E402
from test_cli import assert_one_line_error, run  # noqa: E402

from onnxplain import data  # noqa: E402
from onnxplain.model import OnnxModel, raw_runner  # noqa: E402

SIDE = 240  # testnet images, kept at full size: Keras users' models take the images they were trained on



def tiny_unet() -> keras.Model:
    """Channels-last segmenter: two scales, a skip, batch norm, and a per-pixel sigmoid."""
    image = keras.Input((SIDE, SIDE, 1), name="image")
    fine = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(image)
    fine = keras.layers.BatchNormalization()(fine)
    coarse = keras.layers.MaxPooling2D(4)(fine)
    coarse = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(coarse)
    coarse = keras.layers.UpSampling2D(4)(coarse)
    both = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(keras.layers.Concatenate()([fine, coarse]))
    return keras.Model(image, keras.layers.Conv2D(1, 1, activation="sigmoid")(both), name="tiny_unet")


def bce_dice(truth, predicted):
    # Segments cover 1.6 % of a testnet image: cross-entropy alone learns to draw nothing.
    overlap = keras.ops.sum(truth * predicted)
    dice = 1 - 2 * overlap / (keras.ops.sum(truth) + keras.ops.sum(predicted) + 1)
    return keras.losses.binary_crossentropy(truth, predicted) + dice


@pytest.fixture(scope="module")
def images():
    """The bundled testnet samples as a channels-last batch, (12, 240, 240, 1)."""
    return np.stack([data.load_sample(i).image for i in range(len(data.sample_names()))])[..., None]


@pytest.fixture(scope="module")
def trained(images, tmp_path_factory):
    """A `tiny_unet` trained for about five seconds on the bundled samples, saved as .keras: (path, model)."""
    keras.utils.set_random_seed(0)
    segments = np.stack([data.load_sample(i).segment for i in range(len(images))])[..., None].astype(np.float32)
    model = tiny_unet()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=bce_dice)
    path = tmp_path_factory.mktemp("keras") / "tiny_unet.keras"
    with warnings.catch_warnings():
        # Keras's training and saving, not the exporter, still hand NumPy 2 an old-style __array__.
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        losses = model.fit(images, segments, batch_size=4, epochs=15, shuffle=False, verbose=0).history["loss"]
        model.save(path)
    assert losses[-1] < 0.6 * losses[0]  # it learnt something, so the explanation has a mask to explain
    return path, model


def test_trained_model_exports_with_parity_and_explains(runner, trained, images, tmp_path):
    path, model = trained
    image_file = data.samples_dir() / "images" / data.sample_names()[0]
    out = tmp_path / "tiny_unet.onnx"
    result = run(runner, "export", "keras", path, "--out", out, "--real-input", image_file)
    assert result.exit_code == 0, result.output
    assert "onnxruntime matches Keras within" in result.output and "on 3 checked inputs" in result.output

    onnx_model = OnnxModel(out, device="cpu")
    assert onnx_model.input.batch is None and onnx_model.input.layout == "NHWC"  # dynamic batch, channels last
    expected = model(images[:5], training=False).numpy()
    assert np.abs(raw_runner(out)(images[:5])[0] - expected).max() <= 1e-4
    # The sigmoid stays the file's last node, so onnxplain reads Keras's probabilities, not their sigmoid.
    assert onnx.load(out).graph.node[-1].op_type == "Sigmoid"
    read = onnx_model.predict(images[:2])
    assert np.abs(read.probability - expected[:2, ..., 0]).max() <= 1e-4 and read.mask.any()

    explained = tmp_path / "explained"
    result = run(runner, "explain", out, image_file, "--method", "hdm", "-p", "hdm:offset=20", "--method", "grad-cam",
                 "--out", explained)
    assert result.exit_code == 0, result.output
    for name in ("hdm", "grad-cam"):
        folder = explained / name
        record = json.loads((folder / "explanation.json").read_text())
        assert record["method"]["name"] == name
        saliency = np.load(folder / "saliency.npy")
        assert saliency.shape == (SIDE, SIDE) and np.isfinite(saliency).all() and np.ptp(saliency) > 0
        assert any(folder.glob("*.png"))
    # Grad-CAM ran on the PyTorch twin of the Keras network, checked against onnxruntime first.
    assert record["twin"]["max_abs_difference"] <= 1e-4


def test_open_sides_rgb_softmax_model(tmp_path):
    keras.utils.set_random_seed(1)
    image = keras.Input((None, None, 3))
    hidden = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(image)
    model = keras.Model(image, keras.layers.Conv2D(2, 1, activation="softmax")(hidden))
    with pytest.raises(ExportError, match=r"sides left open; give the height and width"):
        export_keras(model, tmp_path / "open.onnx")
    gray = [np.zeros((1, 8, 8, 1), np.float32)]
    with pytest.raises(ExportError, match=r"real input 0 has shape \(1, 8, 8, 1\), but .* \(None, None, None, 3\)"):
        export_keras(model, tmp_path / "open.onnx", input_size=(24, 40), real_inputs=gray)
    report = export_keras(model, tmp_path / "open.onnx", input_size=(24, 40), opset=17)
    assert set(report.max_abs_diff) == {"random, batch 1", "random, batch 8"} and report.opset == 17
    assert max(report.max_abs_diff.values()) <= 1e-4
    graph = onnx.load(report.path).graph
    assert graph.node[-1].op_type == "Softmax"  # moved after the layout change, its axis with it
    other = np.random.default_rng(0).random((3, 20, 28, 3), dtype=np.float32)  # the file keeps the sides open
    assert np.abs(raw_runner(report.path)(other)[0] - model(other).numpy()).max() <= 1e-4
    read = OnnxModel(report.path, device="cpu", class_index=1).predict(other)
    assert np.abs(read.probability - model(other).numpy()[..., 1]).max() <= 1e-4


class EagerOnly(keras.layers.Layer):
    """Adds 0.01 above `threshold` when run eagerly, nothing when traced: Keras computes what it does not export."""

    def __init__(self, threshold: float):
        super().__init__()
        self.threshold = threshold

    def call(self, x):
        return x + 0.01 * tf.cast(x > self.threshold, x.dtype) if tf.executing_eagerly() else x


@pytest.mark.parametrize(("threshold", "failing"), [(-1.0, "random, batch 1"), (1.5, "real 0")])
def test_outputs_that_differ_fail_the_export_and_write_nothing(tmp_path, threshold, failing):
    image = keras.Input((16, 16, 1))
    model = keras.Model(image, keras.layers.Conv2D(1, 1, kernel_initializer="ones")(EagerOnly(threshold)(image)))
    bright = np.full((1, 16, 16, 1), 2.0, np.float32)  # random inputs lie in [0, 1), this one above
    with pytest.raises(ExportError, match=rf"disagree on the {failing} input: max abs difference 0.01 > 0.0001"):
        export_keras(model, tmp_path / "bad.onnx", real_inputs=[bright])
    assert list(tmp_path.iterdir()) == []


def test_a_model_with_two_inputs_is_refused(tmp_path):
    left, right = keras.Input((8, 8, 1)), keras.Input((8, 8, 1))
    model = keras.Model([left, right], keras.layers.Add()([left, right]))
    with pytest.raises(ExportError, match=r"one input; .* has 2"):
        export_keras(model, tmp_path / "two.onnx")


@pytest.mark.parametrize(("make", "fragment"), [
    (lambda tmp: tmp / "missing.keras", "Keras model file not found"),
    (lambda tmp: tmp / "text.keras", "is not a Keras model: a .keras file is a zip archive"),
    (lambda tmp: tmp / "text.h5", "text.h5 is not a Keras model (.keras or .h5)"),
    (lambda tmp: tmp / "notes.txt", "Keras 3 reads .keras files and legacy .h5 ones"),
])
def test_a_missing_or_foreign_model_file_is_one_line(runner, tmp_path, make, fragment):
    for name in ("text.keras", "text.h5", "notes.txt"):
        (tmp_path / name).write_text("not a model\n")
    out = tmp_path / "out" / "x.onnx"
    assert_one_line_error(run(runner, "export", "keras", make(tmp_path), "--out", out), fragment)
    assert not out.parent.exists()


def test_an_unwritable_output_is_one_line_and_writes_nothing(runner, trained, tmp_path):
    (tmp_path / "file").write_text("")
    result = run(runner, "export", "keras", trained[0], "--out", tmp_path / "file" / "x.onnx")
    assert_one_line_error(result, "cannot write", "file is a file, not a folder")
    assert_one_line_error(run(runner, "export", "keras", trained[0], "--out", tmp_path), "it is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_real_input_of_the_wrong_size_is_one_line(runner, trained, tmp_path, square_png):
    result = run(runner, "export", "keras", trained[0], "--out", tmp_path / "x.onnx", "--real-input", square_png)
    assert_one_line_error(result, "is 32x32 but the model's input (None, 240, 240, 1) needs 240x240")
    assert not (tmp_path / "x.onnx").exists()


def test_without_tensorflow_the_command_says_how_to_install_it(runner, tmp_path, monkeypatch):
    real_import = plugin.importlib.import_module

    def no_tensorflow(name, *args):
        if name == "tensorflow":
            raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")
        return real_import(name, *args)

    monkeypatch.setattr(plugin.importlib, "import_module", no_tensorflow)
    result = run(runner, "export", "keras", tmp_path / "model.keras", "--out", tmp_path / "x.onnx")
    assert_one_line_error(result, "needs TensorFlow", 'install them with: pip install "onnxplain[tensorflow]"')
    assert list(tmp_path.iterdir()) == []
