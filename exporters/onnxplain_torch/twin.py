"""A PyTorch twin of an ONNX model: the same graph run with torch operations, so gradients flow.

onnxruntime has no gradients; the white-box methods run this twin instead, after checking it
against onnxruntime on the image they explain. The graph is read node by node (ONNX nodes are in
topological order) and each op maps to a torch function; ReLU, Sigmoid, Tanh, ELU, Softmax and
MaxPool are modules, one per node, as Captum's guided backpropagation and DeepLIFT hook modules.
onnx2torch would do this too, but it imports torchvision, which has no CPU build to depend on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn import functional as F  # noqa: N812

from onnxplain.errors import OnnxplainError

Value = Any  # a tensor, or None for an omitted optional input
Attributes = dict[str, Any]


def _pads(x: torch.Tensor, pads: Sequence[int], value: float = 0.0) -> torch.Tensor:
    """ONNX pads (all begins, then all ends, for the spatial axes) as F.pad wants them (last axis first)."""
    nd = len(pads) // 2
    pairs = [p for axis in reversed(range(nd)) for p in (pads[axis], pads[axis + nd])]
    return F.pad(x, pairs, value=value) if any(pairs) else x


def _same_pads(x: torch.Tensor, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
               mode: str) -> list[int]:
    begins, ends = [], []
    for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations, strict=True):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begins.append(small if mode == "SAME_UPPER" else large)
        ends.append(large if mode == "SAME_UPPER" else small)
    return begins + ends


def _window(x: torch.Tensor, a: Attributes, kernel: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
    nd = len(kernel)
    strides = list(a.get("strides", [1] * nd))
    dilations = list(a.get("dilations", [1] * nd))
    auto_pad = a.get("auto_pad", b"NOTSET").decode() if isinstance(a.get("auto_pad"), bytes) else "NOTSET"
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = _same_pads(x, kernel, strides, dilations, auto_pad)
    else:
        pads = list(a.get("pads", [0] * 2 * nd))
    return strides, dilations, pads


def _conv(a: Attributes, x: torch.Tensor, w: torch.Tensor, b: Value = None) -> torch.Tensor:
    kernel = list(w.shape[2:])
    strides, dilations, pads = _window(x, a, kernel)
    nd = len(kernel)
    padding: Sequence[int] = pads[:nd]
    if pads[:nd] != pads[nd:]:
        x, padding = _pads(x, pads), [0] * nd
    conv = getattr(F, f"conv{nd}d")
    return conv(x, w, b, stride=strides, padding=padding, dilation=dilations, groups=a.get("group", 1))


def _conv_transpose(a: Attributes, x: torch.Tensor, w: torch.Tensor, b: Value = None) -> torch.Tensor:
    nd = w.dim() - 2
    strides = list(a.get("strides", [1] * nd))
    dilations = list(a.get("dilations", [1] * nd))
    pads = list(a.get("pads", [0] * 2 * nd))
    extra = list(a.get("output_padding", [0] * nd))
    if "output_shape" in a or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise OnnxplainError("ConvTranspose with output_shape or auto_pad has no PyTorch twin here")
    conv = getattr(F, f"conv_transpose{nd}d")
    y = conv(x, w, b, stride=strides, output_padding=extra, groups=a.get("group", 1), dilation=dilations)
    # Cropping after a padding-free transposed convolution is ONNX's pads, begins and ends alike.
    crop = tuple(slice(p, y.shape[2 + i] - pads[nd + i]) for i, p in enumerate(pads[:nd]))
    return y[(slice(None), slice(None), *crop)]


class MaxPoolWithPads(nn.Module):
    """ONNX MaxPool: asymmetric padding with -inf first, then torch's pool."""

    def __init__(self, a: Attributes):
        super().__init__()
        self.a = a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = list(self.a["kernel_shape"])
        strides, dilations, pads = _window(x, self.a, kernel)
        pool = getattr(F, f"max_pool{len(kernel)}d")
        return pool(_pads(x, pads, -math.inf), kernel, strides, 0, dilations, ceil_mode=bool(self.a.get("ceil_mode")))


def _max_pool_module(a: Attributes) -> nn.Module:
    kernel = list(a["kernel_shape"])
    nd = len(kernel)
    pads = list(a.get("pads", [0] * 2 * nd))
    symmetric = pads[:nd] == pads[nd:] and all(2 * p <= k for p, k in zip(pads[:nd], kernel, strict=True))
    if len(kernel) == 2 and symmetric and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"):
        return nn.MaxPool2d(kernel, a.get("strides", [1] * nd), pads[:nd], a.get("dilations", [1] * nd),
                            ceil_mode=bool(a.get("ceil_mode")))
    return MaxPoolWithPads(a)


def _average_pool(a: Attributes, x: torch.Tensor) -> torch.Tensor:
    kernel = list(a["kernel_shape"])
    if any(d != 1 for d in a.get("dilations", [1] * len(kernel))):
        raise OnnxplainError("AveragePool with dilations has no PyTorch twin here")
    strides, _, pads = _window(x, a, kernel)
    nd = len(kernel)
    include = bool(a.get("count_include_pad", 0))
    pool = getattr(F, f"avg_pool{nd}d")
    if pads[:nd] == pads[nd:]:
        return pool(x, kernel, strides, pads[:nd], ceil_mode=bool(a.get("ceil_mode")), count_include_pad=include)
    if not include:
        raise OnnxplainError("AveragePool with asymmetric pads excluded from the count has no PyTorch twin here")
    return pool(_pads(x, pads), kernel, strides, 0, ceil_mode=bool(a.get("ceil_mode")))


def _axes(a: Attributes, x: torch.Tensor, given: Value) -> list[int] | None:
    axes = given.tolist() if given is not None else a.get("axes")
    if axes is None or len(axes) == 0:
        return None
    return [int(v) % x.dim() for v in axes]


def _reduce(function: Callable) -> Callable:
    def reduce(a: Attributes, x: torch.Tensor, axes: Value = None) -> torch.Tensor:
        dims = _axes(a, x, axes)
        if dims is None:
            if a.get("noop_with_empty_axes"):
                return x
            dims = list(range(x.dim()))
        return function(x, dim=dims, keepdim=bool(a.get("keepdims", 1)))
    return reduce


def _source_coordinates(out: int, size: int, scale: float, transform: str) -> torch.Tensor:
    """Where each output position samples the input along one axis, as ONNX Resize defines it."""
    o = torch.arange(out, dtype=torch.float64)
    if transform == "half_pixel":
        return (o + 0.5) / scale - 0.5
    if transform == "pytorch_half_pixel":
        return (o + 0.5) / scale - 0.5 if out > 1 else torch.zeros(out, dtype=torch.float64)
    if transform == "align_corners":
        return o * (size - 1) / (out - 1) if out > 1 else torch.zeros(out, dtype=torch.float64)
    if transform == "asymmetric":
        return o / scale
    if transform == "tf_half_pixel_for_nn":
        return (o + 0.5) / scale
    raise OnnxplainError(f"Resize with {transform} coordinates has no PyTorch twin here")


_ROUNDING = {"round_prefer_floor": lambda v: torch.ceil(v - 0.5), "round_prefer_ceil": lambda v: torch.floor(v + 0.5),
             "floor": torch.floor, "ceil": torch.ceil}


def _resize(a: Attributes, x: torch.Tensor, roi: Value = None, scales: Value = None, sizes: Value = None):
    if a["_opset"] < 11:  # Resize-10 takes (X, scales) and samples asymmetrically
        scales, roi = roi, None
        a = {**a, "coordinate_transformation_mode": b"asymmetric", "nearest_mode": b"floor"}
    if "axes" in a:
        raise OnnxplainError("Resize with axes has no PyTorch twin here")
    spatial = list(x.shape[2:])
    if sizes is not None and sizes.numel():
        size = [int(v) for v in sizes.tolist()[2:]]
        factors = [n / m for n, m in zip(size, spatial, strict=True)]
    else:
        factors = [float(f) for f in scales.tolist()[2:]]
        size = [int(math.floor(n * f)) for n, f in zip(spatial, factors, strict=True)]
    mode = a.get("mode", b"nearest").decode()
    transform = a.get("coordinate_transformation_mode", b"half_pixel").decode()
    if mode == "nearest":
        rounding = _ROUNDING[a.get("nearest_mode", b"round_prefer_floor").decode()]
        for axis, (out, n, f) in enumerate(zip(size, spatial, factors, strict=True)):
            index = rounding(_source_coordinates(out, n, f, transform)).clamp(0, n - 1).long()
            x = x.index_select(2 + axis, index)
        return x
    kind = {("linear", 1): "linear", ("linear", 2): "bilinear", ("linear", 3): "trilinear",
            ("cubic", 2): "bicubic"}.get((mode, len(size)))
    if kind is None or transform not in ("half_pixel", "pytorch_half_pixel", "align_corners") \
            or (mode == "cubic" and a.get("cubic_coeff_a", -0.75) != -0.75) or min(size) < 2:
        raise OnnxplainError(f"Resize with mode {mode}, {transform} coordinates has no PyTorch twin here")
    if transform == "align_corners":
        return F.interpolate(x, size=size, mode=kind, align_corners=True)
    # torch maps coordinates with the given factors only when asked not to recompute them.
    return F.interpolate(x, scale_factor=factors, mode=kind, align_corners=False, recompute_scale_factor=False)


def _upsample(a: Attributes, x: torch.Tensor, scales: Value = None) -> torch.Tensor:
    scales = scales if scales is not None else torch.tensor(a["scales"])
    if a.get("mode", b"nearest") != b"nearest":
        raise OnnxplainError("Upsample in linear mode (asymmetric coordinates) has no PyTorch twin here")
    attributes = {"_opset": 11, "mode": b"nearest", "coordinate_transformation_mode": b"asymmetric",
                  "nearest_mode": b"floor"}
    return _resize(attributes, x, None, scales)


def _reshape(a: Attributes, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    target = [int(v) for v in shape.tolist()]
    if not a.get("allowzero"):
        target = [x.shape[i] if v == 0 else v for i, v in enumerate(target)]
    return x.reshape(target)


def _slice(a: Attributes, x: torch.Tensor, starts: Value = None, ends: Value = None, axes: Value = None,
           steps: Value = None) -> torch.Tensor:
    starts_ = starts.tolist() if starts is not None else a["starts"]
    ends_ = ends.tolist() if ends is not None else a["ends"]
    axes_ = axes.tolist() if axes is not None else a.get("axes", list(range(len(starts_))))
    steps_ = steps.tolist() if steps is not None else [1] * len(starts_)
    for start, end, axis, step in zip(starts_, ends_, axes_, steps_, strict=True):
        axis = int(axis) % x.dim()
        size = x.shape[axis]
        start, end = (start + size if start < 0 else start), (end + size if end < 0 else end)
        if step > 0:
            start, end = min(max(start, 0), size), min(max(end, 0), size)
            x = x.narrow(axis, start, max(end - start, 0))[(slice(None),) * axis + (slice(None, None, step),)]
        else:  # from start down to end (excluded): torch slices forwards only, so read a flipped range
            start, end = min(max(start, 0), size - 1), min(max(end, -1), size - 1)
            taken = x.narrow(axis, end + 1, max(start - end, 0)).flip(axis)
            x = taken[(slice(None),) * axis + (slice(None, None, -step),)]
    return x


def _gemm(a: Attributes, x: torch.Tensor, w: torch.Tensor, c: Value = None) -> torch.Tensor:
    x = x.t() if a.get("transA") else x
    w = w.t() if a.get("transB") else w
    y = a.get("alpha", 1.0) * (x @ w)
    return y + a.get("beta", 1.0) * c if c is not None else y


def _clip(a: Attributes, x: torch.Tensor, low: Value = None, high: Value = None) -> torch.Tensor:
    low = low if low is not None else a.get("min")
    high = high if high is not None else a.get("max")
    return x if low is None and high is None else torch.clamp(x, min=low, max=high)


def _split(a: Attributes, x: torch.Tensor, split: Value = None) -> tuple[torch.Tensor, ...]:
    axis = a.get("axis", 0)
    sizes = split.tolist() if split is not None else a.get("split")
    if sizes is None:
        parts = a.get("num_outputs") or a["_outputs"]
        return torch.chunk(x, parts, dim=axis)
    return torch.split(x, sizes, dim=axis)


def _pad(a: Attributes, x: torch.Tensor, pads: Value = None, value: Value = None, axes: Value = None):
    amounts = pads.tolist() if pads is not None else a["pads"]
    if axes is not None:
        raise OnnxplainError("Pad with axes has no PyTorch twin here")
    nd = x.dim()
    pairs = [int(p) for axis in reversed(range(nd)) for p in (amounts[axis], amounts[axis + nd])]
    mode = a.get("mode", b"constant").decode()
    fill = float(value.item()) if value is not None and value.numel() else a.get("value", 0.0)
    if mode == "constant":
        return F.pad(x, pairs, value=fill)
    spatial = pairs[: 2 * (nd - 2)]  # torch pads reflect and edge on the spatial axes only
    if any(pairs[2 * (nd - 2):]):
        raise OnnxplainError(f"Pad in {mode} mode on the batch or channel axis has no PyTorch twin here")
    if mode not in ("reflect", "edge"):
        raise OnnxplainError(f"Pad in {mode} mode has no PyTorch twin here")
    return F.pad(x, spatial, mode={"reflect": "reflect", "edge": "replicate"}[mode])


_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 6: torch.int32, 7: torch.int64, 9: torch.bool,
           10: torch.float16, 11: torch.float64, 16: torch.bfloat16}


def _constant(a: Attributes) -> torch.Tensor:
    if "value" in a:
        return torch.from_numpy(numpy_helper.to_array(a["value"]).copy())
    for key, dtype in (("value_float", torch.float32), ("value_floats", torch.float32),
                       ("value_int", torch.int64), ("value_ints", torch.int64)):
        if key in a:
            return torch.tensor(a[key], dtype=dtype)
    raise OnnxplainError("a Constant node without a tensor value has no PyTorch twin here")


def _legacy_softmax(a: Attributes, x: torch.Tensor, function: Callable) -> torch.Tensor:
    """Softmax before opset 13: over everything from `axis` on (default 1), as one flattened axis."""
    if a["_opset"] >= 13:
        return function(x, dim=a.get("axis", -1))
    axis = a.get("axis", 1) % x.dim()
    return function(x.reshape(*x.shape[:axis], -1), dim=-1).reshape(x.shape)


class _LegacySoftmax(nn.Module):
    def __init__(self, a: Attributes):
        super().__init__()
        self.a = a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _legacy_softmax(self.a, x, torch.softmax)


def _gather(a: Attributes, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    axis = a.get("axis", 0) % x.dim()
    index = index.long()
    index = torch.where(index < 0, index + x.shape[axis], index)  # ONNX counts negative indices from the end
    taken = torch.index_select(x, axis, index.reshape(-1))
    return taken.reshape(tuple(x.shape[:axis]) + tuple(index.shape) + tuple(x.shape[axis + 1:]))


def _divide(a: Attributes, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if not x.is_floating_point() and not y.is_floating_point():  # shape arithmetic: ONNX truncates
        return torch.div(x, y, rounding_mode="trunc")
    return torch.div(x, y)


def _flatten(a: Attributes, x: torch.Tensor) -> torch.Tensor:
    axis = a.get("axis", 1)
    axis = axis + x.dim() if axis < 0 else axis  # ONNX counts a negative axis from the end, within [-rank, rank]
    return x.reshape(math.prod(x.shape[:axis]), -1)


def _cast(a: Attributes, x: torch.Tensor) -> torch.Tensor:
    if a["to"] not in _DTYPES:
        raise OnnxplainError(f"Cast to ONNX type {a['to']} has no PyTorch twin here")
    return x.to(_DTYPES[a["to"]])


def _squeeze(a: Attributes, x: torch.Tensor, axes: Value = None) -> torch.Tensor:
    dims = _axes(a, x, axes)
    return x.squeeze() if dims is None else x.squeeze(tuple(dims))


def _unsqueeze(a: Attributes, x: torch.Tensor, axes: Value = None) -> torch.Tensor:
    dims = axes.tolist() if axes is not None else a["axes"]
    rank = x.dim() + len(dims)
    for axis in sorted(int(d) % rank for d in dims):
        x = x.unsqueeze(axis)
    return x


def _shape(a: Attributes, x: torch.Tensor) -> torch.Tensor:
    sizes = list(x.shape)[a.get("start", 0):a.get("end", None)]
    return torch.tensor(sizes, dtype=torch.int64)


def _variadic(function: Callable) -> Callable:
    def apply(a: Attributes, *xs: torch.Tensor) -> torch.Tensor:
        result = xs[0]
        for x in xs[1:]:
            result = function(result, x)
        return result
    return apply


def _binary(function: Callable) -> Callable:
    return lambda a, x, y: function(x, y)


def _unary(function: Callable) -> Callable:
    return lambda a, x: function(x)


OPS: dict[str, Callable[..., Any]] = {
    "Conv": _conv, "ConvTranspose": _conv_transpose,
    "AveragePool": _average_pool,
    "GlobalAveragePool": lambda a, x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True),
    "GlobalMaxPool": lambda a, x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True),
    "BatchNormalization": lambda a, x, s, b, m, v: F.batch_norm(x, m, v, s, b, False, 0.0, a.get("epsilon", 1e-5)),
    "InstanceNormalization": lambda a, x, s, b: F.instance_norm(x, weight=s, bias=b, eps=a.get("epsilon", 1e-5)),
    "Add": _binary(torch.add), "Sub": _binary(torch.sub), "Mul": _binary(torch.mul), "Div": _divide,
    "Pow": _binary(torch.pow), "Sum": _variadic(torch.add), "Max": _variadic(torch.maximum),
    "Min": _variadic(torch.minimum), "MatMul": _binary(torch.matmul), "Gemm": _gemm,
    "Sqrt": _unary(torch.sqrt), "Exp": _unary(torch.exp), "Log": _unary(torch.log), "Neg": _unary(torch.neg),
    "Abs": _unary(torch.abs), "Reciprocal": _unary(torch.reciprocal), "Erf": _unary(torch.erf),
    "Floor": _unary(torch.floor), "Ceil": _unary(torch.ceil),
    "Identity": _unary(lambda x: x), "Dropout": lambda a, x, *rest: x,
    "LeakyRelu": lambda a, x: F.leaky_relu(x, a.get("alpha", 0.01)),
    "PRelu": lambda a, x, slope: torch.where(x >= 0, x, slope * x),
    "HardSigmoid": lambda a, x: torch.clamp(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0.0, 1.0),
    "HardSwish": _unary(F.hardswish), "Clip": _clip, "Softplus": _unary(F.softplus),
    "LogSoftmax": lambda a, x: _legacy_softmax(a, x, torch.log_softmax),
    "ReduceMean": _reduce(torch.mean), "ReduceSum": _reduce(torch.sum), "ReduceMax": _reduce(torch.amax),
    "ReduceMin": _reduce(torch.amin),
    "Concat": lambda a, *xs: torch.cat(xs, dim=a["axis"]), "Split": _split,
    "Reshape": _reshape, "Flatten": _flatten,
    "Transpose": lambda a, x: x.permute(a.get("perm", list(reversed(range(x.dim()))))),
    "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Shape": _shape,
    "Gather": _gather,
    "Slice": _slice, "Pad": _pad, "Resize": _resize, "Upsample": _upsample,
    "Cast": _cast,
    "Constant": _constant,
    "ConstantOfShape": lambda a, shape: torch.full(
        [int(v) for v in shape.tolist()],
        float(numpy_helper.to_array(a["value"]).item()) if "value" in a else 0.0),
    "Expand": lambda a, x, shape: x * torch.ones([int(v) for v in shape.tolist()], dtype=x.dtype),
    "Tile": lambda a, x, repeats: x.repeat([int(v) for v in repeats.tolist()]),
    "ArgMax": lambda a, x: torch.argmax(x, dim=a.get("axis", 0), keepdim=bool(a.get("keepdims", 1))),
}

# Non-linearities as modules, one per node: what Captum's guided backpropagation and DeepLIFT hook.
MODULES: dict[str, Callable[[Attributes], nn.Module]] = {
    "Relu": lambda a: nn.ReLU(),
    "Sigmoid": lambda a: nn.Sigmoid(),
    "Tanh": lambda a: nn.Tanh(),
    "Elu": lambda a: nn.ELU(a.get("alpha", 1.0)),
    "Softmax": lambda a: nn.Softmax(dim=a.get("axis", -1)) if a["_opset"] >= 13 else _LegacySoftmax(a),
    "MaxPool": _max_pool_module,
}


def unsupported_ops(proto: onnx.ModelProto) -> list[str]:
    """The op types of `proto` that the twin cannot run, sorted; empty when it runs them all."""
    return sorted({node.op_type for node in proto.graph.node if node.op_type not in OPS and node.op_type not in MODULES
                   or node.domain not in ("", "ai.onnx")})


class TorchTwin(nn.Module):
    """An ONNX graph run with PyTorch operations.

    Parameters
    ----------
    proto : onnx.ModelProto
        The model (one image input). Raises `OnnxplainError` naming the ops it cannot run.

    Notes
    -----
    ``twin(x)`` returns the first output; ``twin.run(x, keep=(name, ...))`` returns every output
    and the named intermediate tensors, which stay in the autograd graph, so a gradient can be
    taken with respect to them; ``replace={name: tensor}`` runs the rest of the network on a
    given value of an intermediate tensor.
    """

    def __init__(self, proto: onnx.ModelProto):
        super().__init__()
        missing = unsupported_ops(proto)
        if missing:
            raise OnnxplainError(f"the PyTorch twin cannot run op(s) {', '.join(missing)} of this model")
        graph = proto.graph
        opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 18)
        initializers = {init.name for init in graph.initializer}
        self.input_name = next(value.name for value in graph.input if value.name not in initializers)
        self.output_names = [value.name for value in graph.output]
        self._buffers_by_name: dict[str, str] = {}  # initializer name -> buffer, which .to(device) moves
        for index, init in enumerate(graph.initializer):
            self.register_buffer(f"c{index}", torch.from_numpy(np.array(numpy_helper.to_array(init), copy=True)),
                                 persistent=False)
            self._buffers_by_name[init.name] = f"c{index}"
        self.nodes: list[tuple[str, list[str], list[str], Attributes, str]] = []
        self.nonlinear = nn.ModuleDict()
        for index, node in enumerate(graph.node):
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            attributes["_outputs"] = len(node.output)
            attributes["_opset"] = opset
            key = f"n{index}"
            if node.op_type in MODULES:
                self.nonlinear[key] = MODULES[node.op_type](attributes)
            self.nodes.append((node.op_type, list(node.input), list(node.output), attributes, key))
        self.op_types = sorted({node.op_type for node in graph.node})

    def run(self, x: torch.Tensor, *, keep: Sequence[str] = (), replace: dict[str, torch.Tensor] | None = None
            ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Every output of the graph on input `x`, and the intermediate tensors named in `keep`."""
        values: dict[str, Any] = {name: getattr(self, key) for name, key in self._buffers_by_name.items()}
        values.update({self.input_name: x, "": None})
        replace = replace or {}
        values.update(replace)
        for op, inputs, outputs, attributes, key in self.nodes:
            if outputs and all(name in replace for name in outputs):
                continue
            arguments = [values[name] for name in inputs]
            if op in MODULES:
                result = self.nonlinear[key](*arguments)
            else:
                result = OPS[op](attributes, *arguments)
            results = result if isinstance(result, (tuple, list)) else (result,)
            for name, value in zip(outputs, results, strict=False):
                values[name] = value
        return [values[name] for name in self.output_names], {name: values[name] for name in keep}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)[0][0]
