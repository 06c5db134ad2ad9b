"""The ONNX runner on tiny models: layouts, channels, batches, activations, outputs, errors."""

import numpy as np
import onnx
import pytest

from onnxplain.errors import OnnxplainError
from onnxplain.model import OnnxModel, raw_runner


def expected_mask(image):
    return image.mean(axis=-1) > 0.5


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("channels", [1, 3])
def test_layouts_and_channels_are_read_from_the_model(brightness, bright_square, layout, channels):
    model = OnnxModel(brightness(layout=layout, channels=channels), device="cpu")
    assert (model.input.layout, model.input.channels) == (layout, channels)
    image = np.repeat(bright_square, channels, axis=2)
    out = model.predict(image[None])
    assert out.probability.shape == (1, 32, 32)
    np.testing.assert_array_equal(out.mask[0], expected_mask(image))


def test_model_without_channel_axis(brightness, bright_square):
    model = OnnxModel(brightness(layout="NHW"), device="cpu")
    assert model.input.layout == "NHW"
    np.testing.assert_array_equal(model.predict(bright_square[None]).mask[0], expected_mask(bright_square))


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_batches_are_split_and_joined_in_order(brightness, batch_size):
    images = np.random.default_rng(0).random((7, 32, 32, 1), dtype=np.float32)
    model = OnnxModel(brightness(), device="cpu", batch_size=batch_size)
    out = model.predict(images)
    np.testing.assert_array_equal(out.mask, expected_mask(images))


def test_fixed_batch_of_one_runs_image_by_image(brightness):
    model = OnnxModel(brightness(batch=1, height=32, width=32), device="cpu", batch_size=8)
    assert model.input.batch == 1
    images = np.random.default_rng(1).random((5, 32, 32, 1), dtype=np.float32)
    np.testing.assert_array_equal(model.predict(images).mask, expected_mask(images))


def test_fixed_batch_pads_the_last_chunk(brightness):
    model = OnnxModel(brightness(batch=4), device="cpu")
    images = np.random.default_rng(2).random((6, 32, 32, 1), dtype=np.float32)
    out = model.predict(images)
    assert out.mask.shape == (6, 32, 32)
    np.testing.assert_array_equal(out.mask, expected_mask(images))


def test_cuda_runs_every_chunk_at_the_full_batch(brightness, monkeypatch):
    # On CUDA each new input shape costs onnxruntime a new convolution search (seconds, measured in
    # benchmarks/results/cuda_batch_shapes.txt), so a partial last chunk is padded there, and only there.
    model = OnnxModel(brightness(), device="cpu", batch_size=4)
    images = np.random.default_rng(3).random((6, 32, 32, 1), dtype=np.float32)
    shapes = []
    real_run = model.run_tensor
    monkeypatch.setattr(model, "run_tensor", lambda tensor, name=None: shapes.append(len(tensor)) or real_run(tensor))
    np.testing.assert_array_equal(model.predict(images).mask, expected_mask(images))
    assert shapes == [4, 2]
    model.device = "cuda"  # the chunking rule alone: run_tensor still runs on the CPU session
    cpu_run = model._session.run
    monkeypatch.setattr(model, "_run_bound", lambda tensor, name: cpu_run([name], {model.input.name: tensor})[0])
    shapes.clear()
    np.testing.assert_array_equal(model.predict(images).mask, expected_mask(images))
    assert shapes == [4, 4]


def test_sigmoid_is_applied_to_logits(brightness):
    model = OnnxModel(brightness(), device="cpu")
    image = np.full((1, 4, 4, 1), 0.55, np.float32)
    probability = model.predict(image).probability
    assert model.activation == "sigmoid"
    np.testing.assert_allclose(probability, 1 / (1 + np.exp(-1.0)), rtol=1e-5)


def test_sigmoid_node_at_the_end_means_probabilities(brightness):
    model = OnnxModel(brightness(head="sigmoid"), device="cpu")
    probability = model.predict(np.full((1, 4, 4, 1), 0.55, np.float32)).probability
    assert model.activation == "none"
    np.testing.assert_allclose(probability, 1 / (1 + np.exp(-1.0)), rtol=1e-5)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_softmax_over_two_classes(brightness, bright_square, layout):
    model = OnnxModel(brightness(head="two-class", layout=layout), device="cpu", class_index=1)
    out = model.predict(bright_square[None])
    assert model.activation == "softmax" and model.num_classes == 2
    np.testing.assert_array_equal(out.mask[0], expected_mask(bright_square))
    np.testing.assert_allclose(out.probability[0, 9, 12], 1 / (1 + np.exp(-16.0)), rtol=1e-5)
    background = OnnxModel(brightness(head="two-class", layout=layout), device="cpu", class_index=0)
    np.testing.assert_array_equal(background.predict(bright_square[None]).mask[0], ~expected_mask(bright_square))


def test_explicit_threshold(brightness):
    image = np.full((1, 2, 2, 1), 0.55, np.float32)  # probability 0.73
    assert OnnxModel(brightness(), device="cpu", threshold=0.7).predict(image).mask.all()
    assert not OnnxModel(brightness(), device="cpu", threshold=0.8).predict(image).mask.any()


def test_second_output_by_name_and_index(brightness, bright_square):
    path = brightness(second_output=True)
    by_name = OnnxModel(path, device="cpu", output="negated").predict(bright_square[None]).mask[0]
    by_index = OnnxModel(path, device="cpu", output=1).predict(bright_square[None]).mask[0]
    np.testing.assert_array_equal(by_name, ~expected_mask(bright_square))
    np.testing.assert_array_equal(by_index, by_name)


def test_normalisation_and_bgr(brightness):
    # (x * 255 - 127.5) / 255 + ... : an image at 0.8 normalised with mean 127.5, std 255 gives 0.3 < 0.5
    model = OnnxModel(brightness(), device="cpu", scale=255, mean=127.5, std=255)
    assert not model.predict(np.full((1, 2, 2, 1), 0.8, np.float32)).mask.any()


def test_mean_and_std_follow_the_channel_order_the_model_receives(brightness):
    # A BGR model card writes its mean as B, G, R: the flip comes before the normalisation.
    bgr = OnnxModel(brightness(layout="NHWC", channels=3), device="cpu", color="bgr", mean=[0.1, 0.2, 0.3],
                    std=[1.0, 2.0, 4.0])
    red = np.zeros((1, 2, 2, 3), np.float32)
    red[..., 0] = 1.0
    np.testing.assert_allclose(bgr.to_tensor(red)[0, 0, 0], [-0.1, -0.1, 0.175])
    assert bgr.channel_order == "B,G,R" and bgr.describe()["preprocessing"]["channel_order"] == "B,G,R"


def test_resize_runs_a_fixed_size_model_on_any_image_and_maps_back(brightness):
    fixed = brightness(height=16, width=16)
    image = np.zeros((40, 24, 1), np.float32)
    image[10:30, 6:18] = 0.9
    with pytest.raises(OnnxplainError, match="let onnxplain resize it"):
        OnnxModel(fixed, device="cpu").check_image(image)
    model = OnnxModel(fixed, device="cpu", resize=True)
    assert model.spatial_shape == (None, None) and model.describe()["preprocessing"]["resize_to"] == [16, 16]
    mask = model.predict(model.check_image(image)[None]).mask[0]
    assert mask.shape == (40, 24)
    # Back at the image's size, the segment is the bright block up to a pixel of resampling at its edge.
    assert (mask != (image[..., 0] > 0.5)).sum() <= 2 * (20 + 12)


def test_threshold_is_recorded_as_applied(brightness, bright_square):
    model = OnnxModel(brightness(head="two-class"), device="cpu")
    assert model.describe()["threshold"] is None  # unknown until the first batch settles the activation
    model.predict(bright_square[None])
    assert model.describe()["threshold"] == "argmax" and model.describe()["activation"] == "softmax"
    sigmoid = OnnxModel(brightness(), device="cpu")
    sigmoid.predict(bright_square[None])
    assert sigmoid.describe()["threshold"] == 0.5


def test_io_binding_path_gives_the_same_outputs(brightness, bright_square):
    model = OnnxModel(brightness(), device="cpu")
    tensor = model.to_tensor(bright_square[None])
    np.testing.assert_array_equal(model._run_bound(tensor, model.output_name), model.run_tensor(tensor))


def test_raw_runner_returns_every_output(brightness, bright_square):
    run = raw_runner(brightness(second_output=True))
    outputs = run(bright_square.transpose(2, 0, 1)[None])
    assert len(outputs) == 2
    np.testing.assert_allclose(outputs[0], -outputs[1])


def test_describe_is_plain_data(brightness):
    record = OnnxModel(brightness(), device="cpu").describe()
    assert record["input"]["layout"] == "NCHW" and record["providers"] == ["CPUExecutionProvider"]
    assert len(record["sha256"]) == 64


def test_auto_device_falls_back_to_cpu_quietly(brightness, capfd):
    model = OnnxModel(brightness(), device="auto")
    assert model.device in ("cpu", "cuda")
    assert "onnxruntime" not in capfd.readouterr().err  # no CUDA library noise


# --- bad input ----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(OnnxplainError, match="model file not found"):
        OnnxModel(tmp_path / "nope.onnx")


def test_not_an_onnx_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_text("this is not a model")
    with pytest.raises(OnnxplainError, match="is not an ONNX model"):
        OnnxModel(path)


def test_image_of_the_wrong_size(brightness):
    model = OnnxModel(brightness(height=32, width=32), device="cpu")
    with pytest.raises(OnnxplainError, match=r"image is 20x10 .* model takes 32x32"):
        model.check_image(np.zeros((10, 20)))


def test_image_with_the_wrong_channels(brightness):
    model = OnnxModel(brightness(channels=3), device="cpu")
    with pytest.raises(OnnxplainError, match=r"1 channel\(s\) but the model takes 3"):
        model.check_image(np.zeros((8, 8)))


def test_nan_outputs(brightness):
    model = OnnxModel(brightness(head="nan"), device="cpu")
    with pytest.raises(OnnxplainError, match="NaN or infinite"):
        model.predict(np.zeros((1, 4, 4, 1), np.float32))


def test_class_out_of_range(brightness):
    model = OnnxModel(brightness(), device="cpu", class_index=3)
    with pytest.raises(OnnxplainError, match="class 3 does not exist.*between 0 and 0"):
        model.predict(np.zeros((1, 4, 4, 1), np.float32))


def test_unknown_output(brightness):
    with pytest.raises(OnnxplainError, match=r"no output named 'mask'; its outputs are \['y'\]"):
        OnnxModel(brightness(), device="cpu", output="mask")


def test_ambiguous_layout_needs_an_option(brightness):
    with pytest.raises(OnnxplainError, match="give the layout") as caught:
        OnnxModel(brightness(layout="NCHW", channels="C"), device="cpu")
    assert caught.value.parameters == ("layout",)  # the command line adds its --layout flag


def test_forced_cuda_without_cuda_says_how_to_fix(brightness):
    import onnxruntime

    model_path = brightness()
    try:
        model = OnnxModel(model_path, device="cuda")
    except OnnxplainError as error:
        assert "use the CPU" in str(error) and error.parameters == ("device",)
    else:  # a machine where CUDA works
        assert model.device == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def test_integer_outputs_are_label_maps(tmp_path, bright_square):
    import onnx_models

    path = onnx_models.label_model(tmp_path / "labels.onnx")
    out = OnnxModel(path, device="cpu", class_index=1).predict(bright_square[None])
    np.testing.assert_array_equal(out.mask[0], expected_mask(bright_square))
    np.testing.assert_array_equal(out.probability[0], expected_mask(bright_square).astype(np.float32))
    background = OnnxModel(path, device="cpu", class_index=0).predict(bright_square[None]).mask[0]
    np.testing.assert_array_equal(background, ~expected_mask(bright_square))


def test_uint8_inputs_take_raw_pixels(tmp_path):
    import onnx_models

    model = OnnxModel(onnx_models.uint8_model(tmp_path / "u8.onnx"), device="cpu")
    assert model.input.dtype == np.uint8 and model.scale == 255
    image = np.zeros((1, 4, 4, 3), np.float32)
    image[0, :2] = 0.8
    np.testing.assert_array_equal(model.predict(image).mask[0], image[0].mean(axis=-1) > 0.5)


def test_outputs_read_as_probabilities_must_be_probabilities(brightness, bright_square):
    model = OnnxModel(brightness(), device="cpu", activation="none")
    with pytest.raises(OnnxplainError, match="not probabilities; use the sigmoid or softmax activation"):
        model.predict(bright_square[None])


def test_a_sigmoid_behind_a_converters_transpose_is_read_as_probabilities(tmp_path):
    # tf2onnx ends Keras models so: NHWC -> NCHW, Sigmoid, back to NHWC. The output holds probabilities.
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Sigmoid", ["nchw"], ["probability"]),
             helper.make_node("Transpose", ["probability"], ["out"], perm=[0, 2, 3, 1])]
    spec = ["n", 8, 8, 1]
    graph = helper.make_graph(nodes, "keras-like", [helper.make_tensor_value_info("image", TensorProto.FLOAT, spec)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, spec)])
    path = tmp_path / "keras_like.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(path))
    images = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype(np.float32)
    model = OnnxModel(path, device="cpu")
    np.testing.assert_allclose(model.predict(images).probability, 1 / (1 + np.exp(-images[..., 0])), rtol=1e-5)


@pytest.mark.parametrize("layout,channels", [("NCHW", 3), ("NHWC", 3), ("NCHW", 1), ("NHWC", 1)])
@pytest.mark.parametrize("color", ["rgb", "bgr"])
def test_to_tensor_is_the_plain_formula(brightness, layout, channels, color):
    mean, std = ([0.1, 0.2, 0.3], [0.5, 0.25, 2.0]) if channels == 3 else (0.4, 0.5)
    model = OnnxModel(brightness(layout=layout, channels=channels), device="cpu", color=color, scale=255.0,
                      mean=mean, std=std)
    images = np.random.default_rng(4).random((3, 8, 6, channels), dtype=np.float32)
    flipped = images[..., ::-1] if color == "bgr" and channels == 3 else images
    expected = (flipped * 255.0 - np.float32(mean)) / np.float32(std)
    expected = expected.transpose(0, 3, 1, 2) if layout == "NCHW" else expected
    got = model.to_tensor(images)
    assert got.flags.c_contiguous and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-4)
