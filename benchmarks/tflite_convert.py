"""Convert a float TFLite image network to ONNX, and check the conversion against a TFLite interpreter.

Enough of TFLite for MediaPipe's selfie segmentation (see `tflite_to_onnx`); used by
`real_models.fetch`. Needs ``pip install tflite`` to convert and ``ai-edge-litert`` (or
``tflite-runtime``) for `tflite_parity`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def tflite_to_onnx(tflite_model: bytes, input_name: str = "image", output_name: str = "mask") -> onnx.ModelProto:
    """Convert a float TFLite image network to ONNX, keeping its NHWC signature.

    Covers the operators of MediaPipe's selfie segmentation: DEQUANTIZE of float16 weights (folded
    into float32 initializers), CONV_2D, DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, MAX_POOL_2D, ADD, MUL,
    RELU, RELU6, HARD_SWISH, LOGISTIC, TANH, RESIZE_BILINEAR and MediaPipe's custom
    ``Convolution2DTransposeBias``; anything else raises NotImplementedError. The inside runs in
    NCHW, with a Transpose at each end, and the batch dimension is left free.

    Parameters
    ----------
    tflite_model : bytes
        The ``.tflite`` flatbuffer.
    input_name, output_name : str
        Names of the ONNX input (``[batch, H, W, C]``) and output (``[batch, H, W, C]``).

    Returns
    -------
    onnx.ModelProto
    """
    try:
        import tflite  # flatbuffer bindings: needed only to convert
    except ImportError:
        raise RuntimeError("converting a TFLite model needs the flatbuffer bindings: pip install tflite") from None

    return _Converter(tflite, tflite_model, input_name, output_name).run()


_FLOAT16, _FLOAT32, _INT32, _INT64, _UINT8, _INT8 = 1, 0, 2, 4, 3, 9  # tflite.TensorType
_NUMPY = {_FLOAT32: np.float32, _FLOAT16: np.float16, _INT32: np.int32, _INT64: np.int64, _UINT8: np.uint8,
          _INT8: np.int8}
_UNARY = {"RELU": "Relu", "LOGISTIC": "Sigmoid", "HARD_SWISH": "HardSwish", "TANH": "Tanh"}
_BINARY = {"ADD": "Add", "MUL": "Mul", "SUB": "Sub", "DIV": "Div"}


class _Converter:
    def __init__(self, tflite: Any, buffer: bytes, input_name: str, output_name: str):
        self.tfl, self.buffer = tflite, buffer
        self.model = tflite.Model.GetRootAsModel(buffer, 0)
        if self.model.SubgraphsLength() != 1:
            raise NotImplementedError("only TFLite models with one subgraph are converted")
        self.graph = self.model.Subgraphs(0)
        self.input_name, self.output_name = input_name, output_name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.constants: dict[int, np.ndarray] = {}
        self.ops = [self._op_name(i) for i in range(self.model.OperatorCodesLength())]

    # Reading the flatbuffer

    def _op_name(self, index: int) -> str:
        code = self.model.OperatorCodes(index)
        # Schema 3a: codes above 127 live only in builtin_code; older files only fill the deprecated one.
        number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if number == self.tfl.BuiltinOperator.CUSTOM:
            return "CUSTOM:" + code.CustomCode().decode()
        return next(k for k, v in vars(self.tfl.BuiltinOperator).items() if v == number and not k.startswith("_"))

    def name(self, t: int) -> str:
        return f"{self.graph.Tensors(t).Name().decode()}:{t}"  # tensor names need not be unique

    def shape(self, t: int) -> list[int]:
        tensor = self.graph.Tensors(t)
        return tensor.ShapeAsNumpy().tolist() if tensor.ShapeLength() else []

    def constant(self, t: int) -> np.ndarray | None:
        """The value of a tensor held in the file (or a DEQUANTIZE of one), else None."""
        if t in self.constants:
            return self.constants[t]
        tensor = self.graph.Tensors(t)
        buf = self.model.Buffers(tensor.Buffer())
        if buf.Offset() > 1:  # large models keep buffers after the flatbuffer, by offset
            raw = self.buffer[buf.Offset(): buf.Offset() + buf.Size()]
        elif buf.DataLength():
            raw = buf.DataAsNumpy().tobytes()
        else:
            return None
        if tensor.Type() not in _NUMPY:
            raise NotImplementedError(f"tensor {self.name(t)} has TFLite type {tensor.Type()}")
        return np.frombuffer(raw, dtype=_NUMPY[tensor.Type()]).reshape(self.shape(t))

    def options(self, op: Any, kind: str) -> Any:
        table = op.BuiltinOptions()
        options = getattr(self.tfl, kind)()
        options.Init(table.Bytes, table.Pos)
        return options

    # Writing the graph

    def add(self, op_type: str, inputs: list[str], output: str, **attributes: Any) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=f"{op_type}_{len(self.nodes)}",
                                           **attributes))
        return output

    def initializer(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def fused(self, fused: int, op_type: str, inputs: list[str], output: str, **attributes: Any) -> None:
        """Add an operator followed by its fused activation (ActivationFunctionType), making `output`."""
        if fused == self.tfl.ActivationFunctionType.NONE:
            self.add(op_type, inputs, output, **attributes)
        else:
            self.activation(fused, self.add(op_type, inputs, f"{output}/{op_type}", **attributes), output)

    def activation(self, fused: int, x: str, output: str) -> None:
        """Apply an activation (ActivationFunctionType, not NONE) that produces `output`."""
        kinds = self.tfl.ActivationFunctionType
        if fused == kinds.RELU:
            self.add("Relu", [x], output)
        elif fused in (kinds.RELU6, kinds.RELU_N1_TO_1):
            low, high = (0.0, 6.0) if fused == kinds.RELU6 else (-1.0, 1.0)
            bounds = [self.initializer(f"{output}/min", np.float32(low)),
                      self.initializer(f"{output}/max", np.float32(high))]
            self.add("Clip", [x, *bounds], output)
        elif fused == kinds.TANH:
            self.add("Tanh", [x], output)
        else:
            raise NotImplementedError(f"fused activation {fused}")

    @staticmethod
    def same_pads(size: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                  dilation: Sequence[int] = (1, 1)) -> list[int]:
        """TFLite SAME padding as ONNX pads [top, left, bottom, right]: the odd pixel goes at the end."""
        begin, end = [], []
        for n, k, s, d in zip(size, kernel, stride, dilation, strict=True):
            out = -(-n // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
            begin.append(total // 2)
            end.append(total - total // 2)
        return begin + end

    def run(self) -> onnx.ModelProto:
        graph = self.graph
        (t_in,), (t_out,) = graph.InputsAsNumpy().tolist(), graph.OutputsAsNumpy().tolist()
        in_shape, out_shape = self.shape(t_in), self.shape(t_out)
        if len(in_shape) != 4 or len(out_shape) != 4:
            raise NotImplementedError("only NHWC image inputs and outputs are converted")
        self.add("Transpose", [self.input_name], self.name(t_in), perm=[0, 3, 1, 2])
        for i in range(graph.OperatorsLength()):
            self.operator(graph.Operators(i))
        # The last node writes the output in NHWC. When it is element-wise (the final LOGISTIC), the
        # Transpose goes before it, so that the output is made by a Sigmoid node, as onnxplain looks for.
        last = next(n for n in reversed(self.nodes) if n.output[0] == self.name(t_out))
        if last.op_type in ("Sigmoid", "Relu", "Tanh") and len(last.input) == 1:
            self.add("Transpose", [last.input[0]], f"{last.input[0]}/nhwc", perm=[0, 2, 3, 1])
            self.nodes.remove(last)
            self.add(last.op_type, [f"{last.input[0]}/nhwc"], self.output_name)
        else:
            self.add("Transpose", [self.name(t_out)], self.output_name, perm=[0, 2, 3, 1])
        used = {name for node in self.nodes for name in node.input}
        graph_proto = helper.make_graph(
            self.nodes, "selfie_segmentation",
            [helper.make_tensor_value_info(self.input_name, TensorProto.FLOAT, ["batch", *in_shape[1:]])],
            [helper.make_tensor_value_info(self.output_name, TensorProto.FLOAT, ["batch", *out_shape[1:]])],
            [init for init in self.initializers if init.name in used],
        )
        opset = helper.make_opsetid("", OPSET)
        # The oldest IR version for the opset, so that older onnxruntime builds load it too.
        onnx_model = helper.make_model(graph_proto, opset_imports=[opset], producer_name="onnxplain real_models.py",
                                       ir_version=helper.find_min_ir_version_for([opset]))
        description = self.model.Description()
        onnx_model.doc_string = f"Converted from TFLite ({description.decode() if description else 'no description'})"
        return onnx.shape_inference.infer_shapes(onnx_model, strict_mode=True)

    def operator(self, op: Any) -> None:
        kind = self.ops[op.OpcodeIndex()]
        inputs, (out,) = op.InputsAsNumpy().tolist(), op.OutputsAsNumpy().tolist()
        if kind == "DEQUANTIZE":
            value = self.constant(inputs[0])
            if value is None or value.dtype != np.float16:
                raise NotImplementedError("only DEQUANTIZE of float16 weights is converted")
            self.constants[out] = value.astype(np.float32)
            return
        if len(self.shape(out)) != 4:
            raise NotImplementedError(f"{kind}: only 4-D activations are converted")
        x, y = self.name(inputs[0]), self.name(out)
        in_hw = self.shape(inputs[0])[1:3]
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            depthwise = kind == "DEPTHWISE_CONV_2D"
            o = self.options(op, "DepthwiseConv2DOptions" if depthwise else "Conv2DOptions")
            weight = self.constant(inputs[1])  # OHWI, or 1HW(C*multiplier) for depthwise
            bias = self.constant(inputs[2]) if len(inputs) > 2 and inputs[2] >= 0 else None
            if weight is None:
                raise NotImplementedError(f"{kind} with a computed weight")
            channels = self.shape(inputs[0])[3]
            weight = weight.transpose(3, 0, 1, 2) if depthwise else weight.transpose(0, 3, 1, 2)  # to OIHW
            if not depthwise and weight.shape[1] != channels:
                raise NotImplementedError("grouped CONV_2D")
            kernel, stride = list(weight.shape[2:]), [o.StrideH(), o.StrideW()]
            dilation = [o.DilationHFactor(), o.DilationWFactor()]
            pads = self.same_pads(in_hw, kernel, stride, dilation) if o.Padding() == self.tfl.Padding.SAME else [0] * 4
            names = [x, self.initializer(f"{y}/weight", np.ascontiguousarray(weight))]
            if bias is not None:
                names.append(self.initializer(f"{y}/bias", bias.astype(np.float32)))
            self.fused(o.FusedActivationFunction(), "Conv", names, y, kernel_shape=kernel, strides=stride,
                       dilations=dilation, pads=pads, group=channels if depthwise else 1)
        elif kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            o = self.options(op, "Pool2DOptions")
            kernel, stride = [o.FilterHeight(), o.FilterWidth()], [o.StrideH(), o.StrideW()]
            pads = self.same_pads(in_hw, kernel, stride) if o.Padding() == self.tfl.Padding.SAME else [0] * 4
            if kind == "AVERAGE_POOL_2D" and kernel == in_hw and self.shape(out)[1:3] == [1, 1]:
                # A global mean (squeeze-excite). onnxruntime's AveragePool sums a 128x128 window in
                # one float32 running sum (relative error ~4e-6, enough to break the 1e-4 parity);
                # a mean over rows, then over the row means, is ~20x closer to float64.
                rows = self.add("ReduceMean", [x], f"{y}/rows", axes=[3], keepdims=1)
                self.fused(o.FusedActivationFunction(), "ReduceMean", [rows], y, axes=[2], keepdims=1)
            elif kind == "AVERAGE_POOL_2D":
                # TFLite averages over the pixels inside the image only.
                self.fused(o.FusedActivationFunction(), "AveragePool", [x], y, kernel_shape=kernel, strides=stride,
                           pads=pads, count_include_pad=0)
            else:
                self.fused(o.FusedActivationFunction(), "MaxPool", [x], y, kernel_shape=kernel, strides=stride,
                           pads=pads)
        elif kind in _BINARY:
            o = self.options(op, {"ADD": "AddOptions", "MUL": "MulOptions", "SUB": "SubOptions",
                                  "DIV": "DivOptions"}[kind])
            names = [self.operand(t, y, k) for k, t in enumerate(inputs)]
            self.fused(o.FusedActivationFunction(), _BINARY[kind], names, y)
        elif kind in _UNARY:
            self.add(_UNARY[kind], [x], y)
        elif kind == "RELU6":
            self.activation(self.tfl.ActivationFunctionType.RELU6, x, y)
        elif kind == "RESIZE_BILINEAR":
            o = self.options(op, "ResizeBilinearOptions")
            size = self.constant(inputs[1])
            if size is None:
                raise NotImplementedError("RESIZE_BILINEAR with a computed size")
            mode = ("align_corners" if o.AlignCorners() else "half_pixel" if o.HalfPixelCenters() else "asymmetric")
            # Sizes rather than scales, so the output size is exact; the batch comes from the input.
            batch_channels = self.add("Shape", [x], f"{y}/nc", start=0, end=2)
            hw = self.initializer(f"{y}/hw", size.astype(np.int64))
            sizes = self.add("Concat", [batch_channels, hw], f"{y}/sizes", axis=0)
            self.add("Resize", [x, "", "", sizes], y, mode="linear", coordinate_transformation_mode=mode)
        elif kind == "CUSTOM:Convolution2DTransposeBias":
            self.transpose_conv_bias(op, inputs, x, y, in_hw)
        else:
            raise NotImplementedError(f"TFLite operator {kind}")

    def operand(self, t: int, y: str, k: int) -> str:
        """An input of an element-wise op: an activation, or a constant made NCHW-broadcastable."""
        value = self.constant(t)
        if value is None:
            return self.name(t)
        value = value.astype(np.float32)
        if value.ndim == 4:
            value = value.transpose(0, 3, 1, 2)
        elif value.ndim == 1:
            value = value.reshape(-1, 1, 1)  # per channel: the last NHWC axis is axis 1 in NCHW
        elif value.ndim != 0:
            raise NotImplementedError(f"element-wise constant of shape {value.shape}")
        return self.initializer(f"{y}/operand{k}", np.ascontiguousarray(value))

    def transpose_conv_bias(self, op: Any, inputs: list[int], x: str, y: str, in_hw: list[int]) -> None:
        """MediaPipe's Convolution2DTransposeBias: TFLite TRANSPOSE_CONV plus a bias, input first.

        Its custom options are a raw ``TfLiteTransposeConvParams`` (int32 padding, stride_width,
        stride_height), not a flexbuffer, and use the C enum TfLitePadding (1 SAME, 2 VALID), not the
        schema's Padding (0 SAME, 1 VALID).
        """
        padding, stride_w, stride_h = np.frombuffer(op.CustomOptionsAsNumpy().tobytes(), dtype="<i4")[:3].tolist()
        weight, bias = self.constant(inputs[1]), self.constant(inputs[2])  # weight OHWI
        if weight is None or bias is None:
            raise NotImplementedError("Convolution2DTransposeBias with computed weights")
        kernel, stride = list(weight.shape[1:3]), [stride_h, stride_w]
        out_hw = self.shape(int(op.OutputsAsNumpy()[0]))[1:3]
        pads_begin, pads_end, extra = [], [], []
        for n, k, s, out in zip(in_hw, kernel, stride, out_hw, strict=True):
            # TFLite computes the padding of the forward convolution from the output size (SAME: the
            # odd pixel at the end); ONNX needs it cut from the full (n - 1) * s + k result.
            total = (n - 1) * s + k - out if padding == 1 else 0
            pads_begin.append(max(total, 0) // 2)
            pads_end.append(max(total, 0) - max(total, 0) // 2)
            extra.append(max(-total, 0) if padding == 1 else out - ((n - 1) * s + k))
        if min(extra) < 0 or padding not in (1, 2):
            raise NotImplementedError(f"Convolution2DTransposeBias padding {padding} from {in_hw} to {out_hw}")
        names = [x, self.initializer(f"{y}/weight", np.ascontiguousarray(weight.transpose(3, 0, 1, 2))),  # IOHW
                 self.initializer(f"{y}/bias", bias.astype(np.float32))]
        self.add("ConvTranspose", names, y, kernel_shape=kernel, strides=stride, pads=pads_begin + pads_end,
                 output_padding=extra)


# --------------------------------------------------------------------------------------------------
# Parity with TFLite


def tflite_parity(tflite_model: bytes, onnx_model: onnx.ModelProto, images: np.ndarray) -> float:
    """Max abs difference between a TFLite interpreter and onnxruntime on the same inputs.

    TFLite runs one image at a time (its batch is 1); onnxruntime runs them all in one batch, which
    also checks the free batch dimension. MediaPipe's custom ``Convolution2DTransposeBias`` is run
    by the XNNPACK delegate that both interpreters apply by default.

    Raises
    ------
    RuntimeError
        When neither ``ai-edge-litert`` nor ``tflite-runtime`` is installed.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise RuntimeError("no TFLite interpreter for the parity check: pip install ai-edge-litert "
                               "(or tflite-runtime), or pass --no-parity") from None
    import onnxruntime as ort

    interpreter = Interpreter(model_content=tflite_model)
    interpreter.allocate_tensors()
    tfl_in, tfl_out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    expected = []
    for one in images:
        interpreter.set_tensor(tfl_in, one[None])
        interpreter.invoke()
        expected.append(interpreter.get_tensor(tfl_out)[0].copy())
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: images})
    return float(np.abs(got - np.stack(expected)).max())


