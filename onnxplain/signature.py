"""What an ONNX model takes and gives: its image input, its outputs, the node behind an output.

These read the model's declared graph; running it is `onnxplain.model`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from onnxplain.errors import OnnxplainError, first_line

LAYOUTS = ("NCHW", "NHWC", "NHW")
_DTYPES: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(uint8)": np.dtype(np.uint8),
}
_IMAGE_CHANNELS = (1, 3, 4)


@dataclass(frozen=True)
class InputSpec:
    """What the model's image input looks like.

    Attributes
    ----------
    name : str
        Name of the ONNX input.
    layout : {'NCHW', 'NHWC', 'NHW'}
        Axis order of the input tensor.
    channels : int
        Image channels the model takes.
    height, width : int or None
        Fixed spatial size, or None where the model takes any size.
    batch : int or None
        Fixed batch size, or None for a dynamic batch axis.
    dtype : numpy.dtype
        Element type of the input tensor.
    """

    name: str
    layout: str
    channels: int
    height: int | None
    width: int | None
    batch: int | None
    dtype: np.dtype


def load_graph(path: Path) -> onnx.GraphProto:
    """Parse an ONNX file's graph (weights in external files are not read), or say why it is no model."""
    if not path.is_file():
        raise OnnxplainError(f"model file not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:
        raise OnnxplainError(
            f"{path} is not an ONNX model ({first_line(error)}); export the model to ONNX first, "
            "for example with `onnxplain export torch`"
        ) from error
    if not proto.graph.input or not proto.graph.output:
        raise OnnxplainError(f"{path} is not an ONNX model with inputs and outputs; export the model to ONNX first")
    return proto.graph


def read_input_spec(inputs: Sequence, layout: str | None, channels: int | None) -> InputSpec:
    """The image input of a model from its inputs' names, types and shapes (onnxruntime ``NodeArg``s).

    `layout` and `channels` override what the shape says, for models that leave them open.
    """
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise OnnxplainError(f"the model takes {len(inputs)} inputs ({names}); onnxplain feeds a single image input")
    node = inputs[0]
    dtype = _DTYPES.get(node.type)
    if dtype is None:
        raise OnnxplainError(
            f"input '{node.name}' has type {node.type}; onnxplain feeds float32, float16, float64 or uint8 images"
        )
    shape = [dim if isinstance(dim, int) and dim > 0 else None for dim in node.shape]
    if len(shape) == 3:
        layout = layout or "NHW"
    elif len(shape) == 4:
        layout = layout or guess_layout(shape)
    else:
        raise OnnxplainError(
            f"input '{node.name}' has shape {node.shape}; onnxplain explains image models whose input is "
            "(N, C, H, W), (N, H, W, C) or (N, H, W)"
        )
    if (layout == "NHW") != (len(shape) == 3):
        raise OnnxplainError(f"layout {layout} does not fit input '{node.name}' of shape {node.shape}",
                             parameters=("layout",))
    channel_axis = {"NCHW": 1, "NHWC": 3, "NHW": None}[layout]
    spatial = {"NCHW": (2, 3), "NHWC": (1, 2), "NHW": (1, 2)}[layout]
    declared = 1 if channel_axis is None else shape[channel_axis]
    if layout != "NHW" and declared is not None and declared not in _IMAGE_CHANNELS:
        other = "NHWC" if layout == "NCHW" else "NCHW"
        if shape[{"NCHW": 1, "NHWC": 3}[other]] in _IMAGE_CHANNELS:
            raise OnnxplainError(
                f"layout {layout} reads input '{node.name}' of shape {node.shape} as {declared} channels, but the "
                f"shape looks like {other}; use {other}, or leave the layout to onnxplain", parameters=("layout",))
    if declared is None:
        if channels is None:
            raise OnnxplainError(
                f"input '{node.name}' of shape {node.shape} leaves the channel count open; give the channel count",
                parameters=("channels",),
            )
        declared = channels
    elif channels is not None and channels != declared:
        raise OnnxplainError(f"{channels} channels do not fit input '{node.name}', which takes {declared}",
                             parameters=("channels",))
    return InputSpec(
        name=node.name,
        layout=layout,
        channels=declared,
        height=shape[spatial[0]],
        width=shape[spatial[1]],
        batch=shape[0],
        dtype=dtype,
    )


def guess_layout(shape: list[int | None]) -> str:
    """NCHW or NHWC, from which of axes 1 and 3 looks like image channels (1, 3 or 4)."""
    first, last = shape[1], shape[3]
    first_is_channels = first in _IMAGE_CHANNELS
    last_is_channels = last in _IMAGE_CHANNELS
    if first_is_channels and not last_is_channels:
        return "NCHW"
    if last_is_channels and not first_is_channels:
        return "NHWC"
    raise OnnxplainError(
        f"cannot tell whether the input of shape {shape} is NCHW or NHWC; give the layout",
        parameters=("layout",),
    )


def output_name(names: list[str], output: int | str) -> str:
    """The name of the output chosen by index (or digits) or by name, among `names`."""
    if isinstance(output, str) and output.isdigit():
        output = int(output)
    if isinstance(output, int):
        if not 0 <= output < len(names):
            raise OnnxplainError(f"output index {output} is out of range: the model has outputs {names}")
        return names[output]
    if output not in names:
        raise OnnxplainError(f"the model has no output named {output!r}; its outputs are {names}")
    return output


LAYOUT_OPS = frozenset({"Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Flatten"})
"""Ops that move values without changing them: converters put them after a model's last activation."""


def producer_op(graph: onnx.GraphProto, output_name: str) -> str | None:
    """Type of the node that computes `output_name`'s values, looking through layout-only nodes.

    tf2onnx, for one, ends a Keras model with a Transpose or Reshape after its sigmoid or softmax;
    the op that matters for reading the output is that activation. None for an output fed
    straight from an input.
    """
    producers = {name: node for node in graph.node for name in node.output}
    node = producers.get(output_name)
    while node is not None and node.op_type in LAYOUT_OPS and node.input:
        node = producers.get(node.input[0])
    return node.op_type if node is not None else None
