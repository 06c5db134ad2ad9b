"""Tiny ONNX models built with onnx.helper, whose correct outputs and attributions are known.

- `brightness_model`: segments bright pixels (channel mean above 0.5); each output pixel depends
  on its own input pixel only.
- `quadrant_model`: every output pixel is the same logit, set by the mean brightness of one
  quadrant of the input; nothing outside that quadrant matters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # ReduceMean still takes its axes as an attribute


def _save(nodes, inputs, outputs, initializers, path: Path) -> Path:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _constant(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def _input_shape(layout: str, channels: int, batch, height, width) -> list:
    if layout == "NCHW":
        return [batch, channels, height, width]
    if layout == "NHWC":
        return [batch, height, width, channels]
    return [batch, height, width]


def brightness_model(
    path: Path,
    *,
    layout: str = "NCHW",
    channels: int = 1,
    batch: int | str = "N",
    height: int | str = "H",
    width: int | str = "W",
    head: str = "logit",
    second_output: bool = False,
) -> Path:
    """Logit ``20 * (mean over channels - 0.5)`` per pixel.

    `head`: ``'logit'`` (one logit channel), ``'sigmoid'`` (a Sigmoid node at the end),
    ``'two-class'`` (logits ``[-z, z]`` as two channels, class 1 = bright, for softmax),
    ``'nan'`` (the logit divided by zero where dark: NaN/Inf outputs).
    `second_output` adds an output ``'negated'`` holding ``-z``.
    """
    channel_axis = {"NCHW": 1, "NHWC": 3}.get(layout)
    nodes, inits = [], [_constant("half", 0.5), _constant("gain", 20.0), _constant("minus", -1.0)]
    source = "x"
    if channel_axis is not None:
        nodes.append(helper.make_node("ReduceMean", ["x"], ["m"], axes=[channel_axis], keepdims=1))
        source = "m"
    nodes += [
        helper.make_node("Sub", [source, "half"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], ["z"]),
    ]
    output_channels = 1
    if head == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", ["z"], ["y"]))
    elif head == "two-class":
        nodes += [
            helper.make_node("Mul", ["z", "minus"], ["negative"]),
            helper.make_node("Concat", ["negative", "z"], ["y"], axis=channel_axis),
        ]
        output_channels = 2
    elif head == "nan":
        inits.append(_constant("zero", 0.0))
        nodes += [
            helper.make_node("Relu", ["z"], ["positive"]),
            helper.make_node("Mul", ["positive", "zero"], ["zeros"]),
            helper.make_node("Div", ["z", "zeros"], ["y"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["z"], ["y"]))
    in_shape = _input_shape(layout, channels, batch, height, width)
    out_shape = _input_shape(layout, output_channels, batch, height, width)
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)]
    if second_output:
        nodes.append(helper.make_node("Mul", ["z", "minus"], ["negated"]))
        outputs.append(helper.make_tensor_value_info("negated", TensorProto.FLOAT, out_shape))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)]
    return _save(nodes, inputs, outputs, inits, path)


def quadrant_model(path: Path, *, height: int = 32, width: int = 32, threshold: float = 0.25) -> Path:
    """NCHW, 1 channel: every output logit is ``20 * (mean of the top-left quadrant - threshold)``."""
    inits = [
        _constant("threshold", threshold),
        _constant("gain", 20.0),
        _constant("zero", 0.0),
        numpy_helper.from_array(np.array([0, 0], np.int64), "starts"),
        numpy_helper.from_array(np.array([height // 2, width // 2], np.int64), "ends"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
    ]
    nodes = [
        helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["quadrant"]),
        helper.make_node("ReduceMean", ["quadrant"], ["level"], axes=[2, 3], keepdims=1),
        helper.make_node("Sub", ["level", "threshold"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], ["z"]),
        helper.make_node("Mul", ["x", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "z"], ["y"]),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, height, width])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, height, width])]
    return _save(nodes, inputs, outputs, inits, path)


def label_model(path: Path) -> Path:
    """NCHW, 1 channel in; an int64 label map (N, H, W) out: 1 where bright, else 0 (an ArgMax head)."""
    inits = [_constant("half", 0.5), _constant("minus", -1.0)]
    nodes = [
        helper.make_node("Sub", ["x", "half"], ["z"]),
        helper.make_node("Mul", ["z", "minus"], ["negative"]),
        helper.make_node("Concat", ["negative", "z"], ["logits"], axis=1),
        helper.make_node("ArgMax", ["logits"], ["y"], axis=1, keepdims=0),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.INT64, ["N", "H", "W"])]
    return _save(nodes, inputs, outputs, inits, path)


def uint8_model(path: Path) -> Path:
    """NHWC uint8 RGB in (raw 0-255 pixels); logit ``20 * (mean / 255 - 0.5)`` out, NHWC."""
    inits = [_constant("full", 255.0), _constant("half", 0.5), _constant("gain", 20.0)]
    nodes = [
        helper.make_node("Cast", ["x"], ["real"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["real"], ["m"], axes=[3], keepdims=1),
        helper.make_node("Div", ["m", "full"], ["unit"]),
        helper.make_node("Sub", ["unit", "half"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], ["y"]),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", "H", "W", 3])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "H", "W", 1])]
    return _save(nodes, inputs, outputs, inits, path)
