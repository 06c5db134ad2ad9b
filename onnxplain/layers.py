"""The intermediate tensors of an ONNX model that activation methods can read, and the default one.

ONNX convolutions work on (N, C, H, W) tensors whatever the model's input layout, so a feature map
is a 4-D tensor whose last two axes are spatial. Shapes come from ONNX shape inference.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import shape_inference

from onnxplain.errors import OnnxplainError

_ACTIVATIONS = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "Clip", "Elu", "Selu", "Gelu"}
_ELEMENTWISE = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "Clip", "Elu", "Selu", "Gelu",
                "BatchNormalization", "Identity", "Dropout", "Mul", "Add", "Div", "Sub", "Softmax", "Resize",
                "Upsample", "Transpose", "Cast"}
"""Ops that keep a feature map a feature map: walking back from the output through them finds the head."""


@dataclass(frozen=True)
class Layer:
    """One intermediate tensor.

    Attributes
    ----------
    name : str
        The tensor's name in the graph (what ``--layer`` takes).
    op : str
        Type of the node that makes it.
    shape : tuple
        Its shape from shape inference: ints, symbolic names, or None where unknown.
    source : str or None
        The first input of the node that makes it (what it is computed from).
    """

    name: str
    op: str
    shape: tuple[int | str | None, ...]
    source: str | None = None

    @property
    def feature_map(self) -> bool:
        """Whether it is a 4-D (N, C, H, W) tensor with spatial axes: H and W not 1 (or not known)."""
        return len(self.shape) == 4 and all(side != 1 for side in self.shape[2:])

    @property
    def channels(self) -> int | None:
        """The channel count of a 4-D tensor, when known."""
        return self.shape[1] if len(self.shape) == 4 and isinstance(self.shape[1], int) else None


def list_layers(path: str | Path) -> list[Layer]:
    """Every intermediate tensor of the model at `path`, in graph order, with its producing op and shape.

    Raises
    ------
    OnnxplainError
        When the file is not an ONNX model.
    """
    try:
        model = onnx.load(str(path), load_external_data=False)
        inferred = shape_inference.infer_shapes(model)
    except Exception as error:  # onnx raises its own decode and inference errors
        raise OnnxplainError(f"{path} is not an ONNX model that shape inference reads ({error})") from error
    shapes = {value.name: _dims(value) for value in [*inferred.graph.value_info, *inferred.graph.output]}
    layers = []
    for node in inferred.graph.node:
        for output in node.output:
            if output and node.op_type != "Constant":
                source = next((name for name in node.input if name), None)
                layers.append(Layer(output, node.op_type, shapes.get(output, ()), source))
    return layers


def default_layer(layers: list[Layer], output: str) -> Layer:
    """The recommended layer: the feature map that the model's head reads.

    Walking back from `output` through element-wise ops, resizes and transposes reaches the head
    (the last Conv, or any other op); the feature map it reads is the last spatial layer before the
    head, as Humer et al. and pytorch-grad-cam choose.
    """
    by_name = {layer.name: layer for layer in layers}
    name = output
    while name in by_name and by_name[name].op in _ELEMENTWISE and by_name[name].source in by_name:
        name = by_name[name].source  # type: ignore[assignment]
    head_index = next((i for i, layer in enumerate(layers) if layer.name == name), len(layers))
    for layer in reversed(layers[:head_index]):
        if layer.feature_map and (layer.channels or 0) > 1:
            return layer
    maps = [layer for layer in layers if layer.feature_map]
    if not maps:
        raise OnnxplainError("the model has no 4-D feature map for an activation method to read",
                             parameters=("method",))
    return maps[-1]


def bottleneck_layer(layers: list[Layer]) -> Layer | None:
    """The last activation's feature map of the smallest known spatial size (a U-Net's bottleneck),
    or None if no feature map has a known size. Where the whole image is seen at once, global evidence (such as
    testnet's decider) shows; see the README's layer sweep."""
    sized = [layer for layer in layers if layer.feature_map and all(isinstance(side, int) for side in layer.shape[2:])
             and (layer.channels or 0) > 1]
    if not sized:
        return None
    smallest = min(int(layer.shape[2]) * int(layer.shape[3]) for layer in sized)  # type: ignore[arg-type]
    candidates = [layer for layer in sized if int(layer.shape[2]) * int(layer.shape[3]) == smallest]  # type: ignore[arg-type]
    # An activation's output, where one exists: a sum or a concatenation mixes in other paths.
    activated = [layer for layer in candidates if layer.op in _ACTIVATIONS]
    return (activated or candidates)[-1]


def find_layer(layers: list[Layer], name: str) -> Layer:
    """The layer called `name`, or an error naming the nearest names; it must be a spatial feature map."""
    for layer in layers:
        if layer.name == name:
            if not layer.feature_map:
                raise OnnxplainError(f"layer {name!r} ({layer.op}, shape {list(layer.shape)}) has no spatial axes; "
                                     "choose a 4-D feature map (see `onnxplain layers MODEL`)", parameters=("layer",))
            return layer
    near = difflib.get_close_matches(name, [layer.name for layer in layers], n=3, cutoff=0.3)
    hint = f"nearest: {', '.join(near)}" if near else "see `onnxplain layers MODEL`"
    raise OnnxplainError(f"the model has no layer {name!r}; {hint}", parameters=("layer",))


def expose_layer(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """`model` with tensor `name` added to its outputs (edited in place and returned)."""
    model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return model


def feed_layer(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """`model` with tensor `name` made an input: what reads it reads the input, and its producer's own
    result goes unused (edited in place and returned). Everything else, skip connections included,
    is still computed from the model's other inputs."""
    for node in model.graph.node:
        for i, produced in enumerate(node.output):
            if produced == name:
                node.output[i] = f"{name}__computed"
    model.graph.input.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return model


def _dims(value: onnx.ValueInfoProto) -> tuple[int | str | None, ...]:
    dims = value.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims)
