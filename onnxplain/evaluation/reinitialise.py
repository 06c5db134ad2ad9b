"""Copies of an ONNX model with freshly drawn weights, for the model-randomisation sanity check.

Only the weights and biases of the layers that learn (Conv, ConvTranspose, Gemm, MatMul) are drawn
again; every other constant keeps its value: shape tensors, Resize scales, slice bounds, and
BatchNormalization statistics (a re-drawn running variance can turn negative and break the model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from onnxplain.errors import OnnxplainError, first_line

LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)
_PROTOBUF_LIMIT = 1_800_000_000  # bytes: a bigger model is written with its weights in a separate file


@dataclass(frozen=True)
class Layer:
    """A layer whose weights are stored in the graph: as initializers, or as Constant nodes (as
    some exporters, paddle2onnx among them, write them).

    Attributes
    ----------
    node : str
        The node's name (or ``OP#INDEX`` for an unnamed one).
    weight : str
        The weight tensor's name (the node input that reads it).
    bias : str or None
        The bias tensor's name: the node's own third input, or for MatMul the constant of the Add
        that follows it.
    fan_in : int
        Inputs that each output sums over, which sets the scale of fresh weights.
    """

    node: str
    weight: str
    bias: str | None
    fan_in: int


def load_model_proto(path: str | Path) -> onnx.ModelProto:
    """The ONNX model at `path` with its weights (external weight files included)."""
    try:
        return onnx.load(str(path))
    except Exception as error:
        raise OnnxplainError(f"cannot read the weights of {path}: {first_line(error)}") from error


def weight_layers(model: onnx.ModelProto) -> list[Layer]:
    """The layers of `model` that have float weights stored in the graph, in graph order (input first).

    Examples
    --------
    >>> from onnxplain import data
    >>> layers = weight_layers(load_model_proto(data.testnet_model_path()))
    >>> len(layers), layers[-1].weight
    (24, 'head.weight')
    """
    graph = model.graph
    stored = _stored_floats(graph)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    layers = []
    for index, node in enumerate(graph.node):
        if node.op_type not in LAYER_OPS:
            continue
        found = _weight_and_fan_in(node, stored)
        if found is None:
            continue
        weight, fan_in = found
        layers.append(Layer(node.name or f"{node.op_type}#{index}", weight, _bias(node, stored, consumers),
                            max(1, int(fan_in))))
    return layers


def _stored_floats(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """The float tensors stored in `graph`, by the name nodes read them as: the tensors themselves,
    so that changing one changes the graph."""
    stored = {tensor.name: tensor for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                stored[node.output[0]] = value
    return {name: tensor for name, tensor in stored.items() if tensor.data_type in _FLOAT_TYPES}


def _weight_and_fan_in(node: onnx.NodeProto, stored: dict) -> tuple[str, float] | None:
    inputs = list(node.input)
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if len(inputs) < 2 or inputs[1] not in stored:
        if node.op_type == "MatMul" and inputs and inputs[0] in stored:  # W @ x: W's last axis is summed
            return inputs[0], float(stored[inputs[0]].dims[-1])
        return None
    dims = list(stored[inputs[1]].dims)
    if not dims:
        return None
    if node.op_type == "Conv":
        return inputs[1], float(np.prod(dims[1:]))
    if node.op_type == "ConvTranspose":
        # Weights (C_in, C_out / groups, k...): a stride spreads each input over fewer kernel taps per output.
        strides = attributes.get("strides") or [1]
        return inputs[1], float(dims[0] * np.prod(dims[2:]) / np.prod(strides))
    if node.op_type == "Gemm":
        return inputs[1], float(dims[1] if attributes.get("transB", 0) and len(dims) > 1 else dims[0])
    return inputs[1], float(dims[-2] if len(dims) > 1 else dims[0])


def _bias(node: onnx.NodeProto, stored: dict, consumers: dict) -> str | None:
    if node.op_type in ("Conv", "ConvTranspose", "Gemm"):
        return node.input[2] if len(node.input) > 2 and node.input[2] in stored else None
    following = consumers.get(node.output[0], [])
    if len(following) == 1 and following[0].op_type == "Add":
        others = [name for name in following[0].input if name != node.output[0]]
        if len(others) == 1 and others[0] in stored:
            return others[0]
    return None


def reinitialise(model: onnx.ModelProto, layers: Sequence[Layer], *, seed: int | Sequence[int]) -> onnx.ModelProto:
    """A copy of `model` whose `layers` have fresh weights; `model` is unchanged.

    Weights are drawn He-normal, ``N(0, 2 / fan_in)``, which keeps the activations' scale through
    ReLU layers, and biases uniform in ``±1 / sqrt(fan_in)`` (PyTorch's default); shapes and
    dtypes are kept. Layer number ``i`` of `layers` draws from ``default_rng([*seed, i])``, so a
    layer gets the same weights whichever other layers are re-drawn with it (a cascade that adds
    layers keeps those drawn before). A tensor shared by several layers is drawn once.

    Parameters
    ----------
    model : onnx.ModelProto
        The model.
    layers : sequence of Layer
        The layers to re-draw, from `weight_layers`.
    seed : int or sequence of int
        Seed of the draws.

    Returns
    -------
    onnx.ModelProto
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    tensors = _stored_floats(copy.graph)
    drawn: set[str] = set()
    seeds = [seed] if isinstance(seed, int) else list(seed)
    for index, layer in enumerate(layers):
        rng = np.random.default_rng([*seeds, index])
        scale = 1.0 / np.sqrt(layer.fan_in)
        for name, is_weight in ((layer.weight, True), (layer.bias, False)):
            if name is None or name in drawn:
                continue
            old = numpy_helper.to_array(tensors[name])
            fresh = (rng.normal(0.0, np.sqrt(2.0) * scale, old.shape) if is_weight
                     else rng.uniform(-scale, scale, old.shape))
            tensors[name].CopyFrom(numpy_helper.from_array(fresh.astype(old.dtype), tensors[name].name))
            drawn.add(name)
    return copy


def save_model_proto(model: onnx.ModelProto, path: Path) -> Path:
    """Write `model` to `path`, its weights beside it in ``NAME.data`` when protobuf cannot hold them."""
    size = sum(tensor.ByteSize() for tensor in _stored_floats(model.graph).values())
    if size > _PROTOBUF_LIMIT:
        onnx.save_model(model, str(path), save_as_external_data=True, location=f"{path.name}.data")
    else:
        onnx.save_model(model, str(path))
    return path
