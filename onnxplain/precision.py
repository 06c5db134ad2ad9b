"""Reduced precision: a model converted to float16 or quantised to int8, and the check that it still agrees.

With `onnxplain.model` and `onnxplain.session`, one of the three modules that import onnxruntime:
its own conversion tools, ``onnxruntime.transformers.float16`` and ``onnxruntime.quantization``.

- ``'fp16'``: every float tensor inside the model becomes float16; its inputs and outputs keep
  their types, so images go in as before.
- ``'int8'``: static quantisation (weights int8 per channel, activations uint8) in the QDQ format,
  calibrated on the image being explained and a few perturbed copies of it
  (`CALIBRATION_COPIES`), so the int8 model is made again for each new image.

Before an explanation runs, the reduced model is compared with the float32 one on the image
(`compare`): the Dice of the two segments of the class, and the correlation of the scores of
`CHECK_PERTURBATIONS` perturbed copies of the image (RISE masks of a fixed seed), each scored
against the model's own unperturbed segment, as perturbation methods score them. Every
perturbation map is built from such scores, so their correlation predicts the map's. A
perturbation method then compares its own values on some of its own perturbed images
(`check_values`, called through `OnnxModel.check_perturbed`), since it may perturb the image harder.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from onnxplain.errors import OnnxplainError, first_line
from onnxplain.outputs import ModelOutput
from onnxplain.session import CPU, quiet_onnxruntime

PRECISIONS = ("fp32", "fp16", "int8")
INT8_FORMAT = "QDQ"  # faster than QOperator on the real model, where int8 pays at all (results/precision.md)
CALIBRATION_COPIES = 8  # perturbed copies beside the image itself (see the benchmark's calibration table)
CALIBRATION_SEED = 1  # not the check's seed: the check must see copies the calibration did not
CHECK_PERTURBATIONS = 32
CHECK_SEED = 0
_QUANTISED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                  "MatMulInteger", "DynamicQuantizeLinear"}


@dataclass(frozen=True)
class Agreement:
    """How far a reduced-precision model agrees with the float32 one on one image.

    Attributes
    ----------
    dice : float
        Dice of the class's segments on the unperturbed image (1 when both are empty).
    correlation : float
        Pearson correlation of the two models' scores over the perturbed copies (the lower of the
        probability score and the Dice score).
    perturbations : int
        How many perturbed copies were scored.
    seed : int
        Seed of their masks.
    """

    dice: float
    correlation: float
    perturbations: int = CHECK_PERTURBATIONS
    seed: int = CHECK_SEED

    def check(self, precision: str, *, min_dice: float, min_correlation: float) -> None:
        """Raise `OnnxplainError` when the agreement falls below either threshold."""
        advice = "use precision fp32 (or fp16 on a GPU)" if precision == "int8" else "use precision fp32"
        if self.dice < min_dice:
            raise OnnxplainError(
                f"precision {precision} changes the model's answer on this image: its segment has Dice "
                f"{self.dice:.3f} with the fp32 segment, below the threshold {min_dice:g}; {advice}",
                parameters=("precision", "min_dice"))
        if self.correlation < min_correlation:
            raise OnnxplainError(
                f"precision {precision} changes how the model responds to perturbations of this image: "
                f"scores of {self.perturbations} perturbed copies correlate {self.correlation:.4f} with fp32's, "
                f"below the threshold {min_correlation:g}; {advice}",
                parameters=("precision", "min_correlation"))

    def describe(self) -> dict:
        """The figures as plain data."""
        return {k: round(v, 5) if isinstance(v, float) else v for k, v in asdict(self).items()}


def check_precision(precision: str, graph: onnx.GraphProto, input_dtype: np.dtype) -> None:
    """Raise `OnnxplainError` when `graph` cannot be reduced to `precision` at all.

    Parameters
    ----------
    precision : {'fp32', 'fp16', 'int8'}
    graph : onnx.GraphProto
        The model's graph (its weights are not needed).
    input_dtype : numpy.dtype
        The type of the image input.
    """
    if precision not in PRECISIONS:
        raise OnnxplainError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}",
                             parameters=("precision",))
    if precision == "fp32":
        return
    quantised = sorted({node.op_type for node in graph.node} & _QUANTISED_OPS)
    if quantised:
        raise OnnxplainError(f"precision {precision} needs a float model, but this one is already quantised "
                             f"({', '.join(quantised)} nodes); use precision fp32", parameters=("precision",))
    if precision == "int8" and input_dtype != np.float32:
        raise OnnxplainError(
            f"precision int8 calibrates the model's float32 input, but this model takes {input_dtype}; "
            "use precision fp32 (or fp16 on a GPU)",
            parameters=("precision",))


def reduce_model(
    source: Path, precision: str, *, calibration: np.ndarray | None = None, input_name: str = "",
    cache: Path | None = None, key: str = "",
) -> bytes:
    """The model of `source` at `precision`, serialised; read from `cache` when made before.

    Parameters
    ----------
    source : Path
        The float32 ``.onnx`` file.
    precision : {'fp16', 'int8'}
    calibration : ndarray, optional
        For int8: the model input tensors (n, ...) whose activation ranges set the quantisation.
    input_name : str
        For int8: the name of the model's image input.
    cache : Path, optional
        Folder of reduced models; None makes the model in memory only.
    key : str
        What identifies the result besides `precision`: the model's SHA-256 (and, for int8, the
        calibration's).

    Returns
    -------
    bytes
    """
    path = None
    if cache is not None:
        name = hashlib.sha256(f"{key}|{precision}|{INT8_FORMAT}|{CALIBRATION_COPIES}".encode()).hexdigest()[:32]
        path = cache / "reduced" / f"{name}.onnx"
        if path.is_file():
            data = path.read_bytes()
            try:
                onnx.load_from_string(data)
                return data
            except Exception:  # a truncated or foreign file: made again
                path.unlink(missing_ok=True)
    try:
        with quiet_onnxruntime(), _quiet_logging():
            data = _to_fp16(source) if precision == "fp16" else _to_int8(source, calibration, input_name)
    except OnnxplainError:
        raise
    except Exception as error:  # onnxruntime's tools raise whatever their graph code meets
        raise OnnxplainError(f"could not make the {precision} model of {source}: {first_line(error)}; "
                             "use precision fp32", parameters=("precision",)) from error
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)  # whole or not at all
    return data


def float32_fallbacks(data: bytes) -> tuple[int, int]:
    """How many casts onnxruntime's CPU provider adds to a float16 model, and the model's node count.

    Where the CPU has no float16 kernel for an operator, onnxruntime runs it in float32 between
    casts it inserts: the model then computes at float32 speed with float16-rounded weights.
    """
    import onnxruntime as ort

    model = onnx.load_from_string(data)
    own = sum(node.op_type == "Cast" for node in model.graph.node)
    with tempfile.TemporaryDirectory(prefix="onnxplain-fp16-") as folder:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # casts as inserted
        options.optimized_model_filepath = str(Path(folder) / "placed.onnx")
        with quiet_onnxruntime():
            ort.InferenceSession(data, options, providers=[CPU])
        placed = onnx.load(options.optimized_model_filepath)
    return sum(node.op_type == "Cast" for node in placed.graph.node) - own, len(model.graph.node) - own


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    """Keep the quantisation tools' advice (logged as warnings) off the user's terminal."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _to_fp16(source: Path) -> bytes:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    return converted.SerializeToString()


def _to_int8(source: Path, calibration: np.ndarray | None, input_name: str, *,
             quant_format: str = INT8_FORMAT) -> bytes:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration is None:
        raise OnnxplainError("the int8 model is calibrated on the image being explained; give it the image")
    feeds = [{input_name: tensor[None]} for tensor in calibration]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    with tempfile.TemporaryDirectory(prefix="onnxplain-int8-") as folder:
        prepared, quantised = Path(folder) / "prepared.onnx", Path(folder) / "int8.onnx"
        # Shape inference and the float fusions first, as onnxruntime advises; the symbolic pass
        # is skipped as it fails on models whose sizes are left open.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        # Weights per output channel need DequantizeLinear's axis, which came with opset 13.
        opset = next((o.version for o in onnx.load(str(prepared), load_external_data=False).opset_import
                      if o.domain in ("", "ai.onnx")), 13)
        quantize_static(str(prepared), str(quantised), Reader(), quant_format=QuantFormat.from_string(quant_format),
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=opset >= 13)
        return quantised.read_bytes()


def perturbed_copies(image: np.ndarray, count: int, *, seed: int) -> np.ndarray:
    """`count` copies of `image` (H, W, C) multiplied by RISE masks (8x8 grids, half kept) of `seed`."""
    from onnxplain.perturbation.rise import RiseMasks

    masks = RiseMasks(image.shape[:-1], n_masks=count, grid_size=8, p1=0.5, seed=seed).batch(0, count).masks
    return (image[None] * masks[..., None]).astype(np.float32)


def compare(
    reference: Callable[[np.ndarray], ModelOutput], reduced: Callable[[np.ndarray], ModelOutput], image: np.ndarray,
) -> Agreement:
    """Compare two models' answers on `image` (H, W, C) and on seeded perturbed copies of it.

    Parameters
    ----------
    reference, reduced : callable
        ``predict(images) -> ModelOutput`` of the float32 and the reduced model, one class of one output.
    image : ndarray
        The image in image space.

    Returns
    -------
    Agreement
    """
    from onnxplain.scores import dice_coefficient

    images = np.concatenate([image[None], perturbed_copies(image, CHECK_PERTURBATIONS, seed=CHECK_SEED)])
    first, second = reference(images), reduced(images)
    dice = float(dice_coefficient(second.mask[:1], first.mask[0])[0])
    series = []
    for out in (first, second):
        own = out.mask[0]
        region = np.flatnonzero(own) if own.any() else np.arange(own.size)  # nothing segmented: the whole image
        series.append((out.probability_at(region)[1:].mean(axis=1), dice_coefficient(out.mask[1:], own)))
    correlation = min(_pearson(a, b) for a, b in zip(*series, strict=True))
    return Agreement(dice=dice, correlation=correlation)


def check_values(precision: str, reference: np.ndarray, reduced: np.ndarray, *, method: str,
                 min_correlation: float) -> dict:
    """Compare the values a perturbation method computes with fp32 and with the reduced model.

    Parameters
    ----------
    precision : str
        The reduced precision.
    reference, reduced : ndarray
        The method's values (score distances) of the same perturbed images, from each model.
    method : str
        The method's name, for the message.
    min_correlation : float
        Lowest Pearson correlation accepted.

    Returns
    -------
    dict
        The figures, for the record.

    Raises
    ------
    OnnxplainError
        When the values correlate less than `min_correlation`.
    """
    correlation = _pearson(np.asarray(reference, np.float64), np.asarray(reduced, np.float64))
    if correlation < min_correlation:
        advice = "use precision fp32 (or fp16 on a GPU)" if precision == "int8" else "use precision fp32"
        raise OnnxplainError(
            f"precision {precision} changes the values {method}'s map is built from: on {len(reference)} of its "
            f"perturbed images they correlate {correlation:.4f} with fp32's, below the threshold "
            f"{min_correlation:g}; {advice}", parameters=("precision", "min_correlation"))
    return {"method": method, "images": len(reference), "correlation": round(correlation, 5)}


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    # Scores that do not vary (a segment no perturbation changes) have no correlation: then the
    # two models agree when their scores are the same.
    if np.ptp(a) < 1e-9 or np.ptp(b) < 1e-9:
        return 1.0 if np.allclose(a, b, atol=1e-3) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


def image_key(tensor: np.ndarray) -> str:
    """SHA-256 of an array's shape, type and values: the calibration's part of an int8 model's key."""
    digest = hashlib.sha256(f"{tensor.shape}|{tensor.dtype}".encode())
    digest.update(np.ascontiguousarray(tensor).tobytes())
    return digest.hexdigest()
