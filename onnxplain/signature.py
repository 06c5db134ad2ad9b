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

LAYOUTS = ("NCHW", "NHWC", "NHW", "NCDHW", "NDHWC")
"""Axis orders of an image input: N the batch, C the channels, D, H and W the spatial axes (D the third
axis of a volume)."""
_DTYPES: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(uint8)": np.dtype(np.uint8),
}
_IMAGE_CHANNELS = (1, 3, 4)
_VOLUME_CHANNELS = (1, 2, 3, 4)  # volumes: one or a few modalities (T1, T2, FLAIR...), never RGB by necessity
_BY_RANK = {3: ("NHW",), 4: ("NCHW", "NHWC"), 5: ("NCDHW", "NDHWC")}


def channel_axis(layout: str) -> int | None:
    """Axis of the channels in an input of `layout`, None when it has none."""
    return layout.index("C") if "C" in layout else None


def spatial_axes(layout: str) -> tuple[int, ...]:
    """Axes of the spatial dimensions in an input of `layout`, in order."""
    return tuple(axis for axis, name in enumerate(layout) if name in "DHW")


@dataclass(frozen=True)
class InputSpec:
    """What the model's image input looks like.

    Attributes
    ----------
    name : str
        Name of the ONNX input.
    layout : {'NCHW', 'NHWC', 'NHW', 'NCDHW', 'NDHWC'}
        Axis order of the input tensor.
    channels : int
        Image channels the model takes.
    spatial : tuple of (int or None)
        Fixed size along each spatial axis (two for images, three for volumes), None where the model
        takes any size.
    batch : int or None
        Fixed batch size, or None for a dynamic batch axis.
    dtype : numpy.dtype
        Element type of the input tensor.
    """

    name: str
    layout: str
    channels: int
    spatial: tuple[int | None, ...]
    batch: int | None
    dtype: np.dtype

    @property
    def height(self) -> int | None:
        """Fixed size of the second-last spatial axis (an image's rows), None where any goes."""
        return self.spatial[-2]

    @property
    def width(self) -> int | None:
        """Fixed size of the last spatial axis (an image's columns), None where any goes."""
        return self.spatial[-1]


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
    choices = _BY_RANK.get(len(shape))
    if choices is None:
        raise OnnxplainError(
            f"input '{node.name}' has shape {node.shape}; onnxplain explains image models whose input is "
            "(N, C, H, W), (N, H, W, C) or (N, H, W), and volume models whose input is (N, C, D, H, W) or "
            "(N, D, H, W, C)"
        )
    layout = layout or (choices[0] if len(choices) == 1 else guess_layout(shape))
    if layout not in choices:
        raise OnnxplainError(f"layout {layout} does not fit input '{node.name}' of shape {node.shape}; it takes "
                             f"{' or '.join(choices)}", parameters=("layout",))
    axis = channel_axis(layout)
    declared = 1 if axis is None else shape[axis]
    plausible = _IMAGE_CHANNELS if len(shape) == 4 else _VOLUME_CHANNELS
    if axis is not None and declared is not None and declared not in plausible:
        other = next(choice for choice in choices if choice != layout)
        other_axis = channel_axis(other)
        if other_axis is not None and shape[other_axis] in plausible:
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
        spatial=tuple(shape[axis] for axis in spatial_axes(layout)),
        batch=shape[0],
        dtype=dtype,
    )


def guess_layout(shape: list[int | None]) -> str:
    """Channels first or last, from which of axis 1 and the last axis looks like channels.

    Image channels are 1, 3 or 4; volume channels (modalities) 1 to 4.
    """
    first, last = shape[1], shape[-1]
    plausible = _IMAGE_CHANNELS if len(shape) == 4 else _VOLUME_CHANNELS
    first_is_channels = first in plausible
    last_is_channels = last in plausible
    first_layout, last_layout = _BY_RANK[len(shape)]
    if first_is_channels and not last_is_channels:
        return first_layout
    if last_is_channels and not first_is_channels:
        return last_layout
    raise OnnxplainError(
        f"cannot tell whether the input of shape {shape} is {first_layout} or {last_layout}; give the layout",
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
