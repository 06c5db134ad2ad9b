"""Export a Keras model to ONNX and prove that onnxruntime computes what Keras computes.

Keras 3 exports through its own ``model.export(path, format="onnx")``, which runs tf2onnx on the
model's TensorFlow graph (and patches tf2onnx for NumPy 2).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import onnx
import tensorflow as tf

from onnxplain.errors import first_line
from onnxplain.exporter import PARITY_BATCHES, ExportError, ExportReport, output_difference
from onnxplain.io import atomic_path
from onnxplain.model import raw_runner

OPSETS = (17, 18)
"""ONNX opsets this exporter writes: from the one onnxplain needs to the newest tf2onnx 1.17 knows."""


def load_model(path: str | Path) -> keras.Model:
    """Read a Keras model file (``.keras``, or legacy ``.h5``) without compiling it.

    Raises
    ------
    ExportError
        When the file is missing or is not a Keras model.
    """
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{path} is a folder, such as a TensorFlow SavedModel; Keras 3 reads .keras and .h5 "
                          "files: save the model with model.save('model.keras')")
    if not path.is_file():
        raise ExportError(f"Keras model file not found: {path}")
    if path.suffix.lower() not in (".keras", ".h5", ".hdf5"):
        raise ExportError(f"{path} is not a Keras model file: Keras 3 reads .keras files and legacy .h5 ones")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        # Keras itself would call such a file "not found".
        raise ExportError(f"{path} is not a Keras model: a .keras file is a zip archive, and this one is not")
    try:
        with _quiet_tensorflow():
            return keras.models.load_model(path, compile=False)
    except Exception as error:
        raise ExportError(f"{path} is not a Keras model (.keras or .h5): {first_line(error)}") from error


def export_keras(
    model: keras.Model | str | Path,
    path: str | Path,
    *,
    opset: int = 18,
    atol: float = 1e-4,
    real_inputs: Sequence[np.ndarray] = (),
    input_size: tuple[int, int] | None = None,
    input_name: str = "image",
    seed: int = 0,
) -> ExportReport:
    """Export a Keras model to ONNX with a dynamic batch axis, check the file, and check parity.

    The file is checked with ``onnx.checker`` (full check), then run with onnxruntime on random
    inputs in [0, 1) at batch sizes 1 and 8 and on `real_inputs`; every output must match Keras
    (run on the CPU, in inference mode) within `atol`. The file appears at `path` only if all
    checks pass. Where the model ends in a sigmoid or softmax, the file ends in it too, so that
    onnxplain reads its output as probabilities.

    Parameters
    ----------
    model : keras.Model, str or Path
        A functional or Sequential model with one float32 input, such as ``(None, H, W, C)``
        channels-last images; or the path of a ``.keras`` or ``.h5`` file holding one.
    path : str or Path
        Where to write the ``.onnx`` file.
    opset : {17, 18}
        ONNX opset.
    atol : float
        Largest absolute difference allowed between onnxruntime and Keras outputs.
    real_inputs : sequence of ndarray
        More input batches to check parity on, such as real images, each shaped like the model's
        input with its batch axis.
    input_size : (int, int), optional
        Height and width of the random inputs, for models whose input leaves them open (the file
        keeps them open).
    input_name : str
        Name of the ONNX input.
    seed : int
        Seed of the random parity inputs.

    Returns
    -------
    ExportReport

    Raises
    ------
    ExportError
        When the model cannot be exported, the checker rejects the file, outputs differ, or the
        file cannot be written.
    """
    if opset not in OPSETS:
        raise ExportError(f"opset must be one of {', '.join(map(str, OPSETS))}, got {opset}")
    if keras.backend.backend() != "tensorflow":
        raise ExportError(f"Keras runs on {keras.backend.backend()}, but this exporter needs TensorFlow; "
                          "unset the KERAS_BACKEND environment variable")
    if not isinstance(model, keras.Model):
        model = load_model(model)
    signature = input_shape(model)
    item_shape = _item_shape(model, signature, input_size)
    for index, batch in enumerate(real_inputs):
        shape = np.shape(batch)
        if len(shape) != len(signature) or any(
            side not in (None, got) for side, got in zip(signature, shape, strict=True)
        ):
            raise ExportError(f"real input {index} has shape {shape}, but {model.name!r} takes {signature}")
    path = _writable(Path(path))
    try:
        with atomic_path(path) as temporary:
            _export(model, signature, str(temporary), opset, input_name)
            _rewrite(str(temporary))
            try:
                onnx.checker.check_model(str(temporary), full_check=True)
            except Exception as error:
                raise ExportError(f"the exported file fails onnx.checker: {first_line(error)}") from error
            differences = _parity(model, item_shape, str(temporary), real_inputs, atol, seed)
    except OSError as error:
        raise ExportError(f"cannot write {path}: {error.strerror or first_line(error)}") from error
    return ExportReport(path=path, opset=opset, max_abs_diff=differences)


def _writable(path: Path) -> Path:
    """`path`, once it is clear that a file can go there; checked before the export's slow work."""
    if path.is_dir():
        raise ExportError(f"cannot write {path}: it is a folder; give the .onnx file to write")
    folder = next((parent for parent in path.parents if parent.exists()), Path("."))
    if not folder.is_dir():
        raise ExportError(f"cannot write {path}: {folder} is a file, not a folder")
    return path


def input_shape(model: keras.Model) -> tuple[int | None, ...]:
    """The shape of the model's one input, batch axis first, None where the model leaves a side open.

    Raises
    ------
    ExportError
        When the model has no known input, several inputs, or a non-float32 input.
    """
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ExportError(f"{type(model).__name__} {model.name!r} has no known input; give a functional or "
                          "Sequential model with an Input, or call model.build(shape) first")
    if len(inputs) != 1:
        raise ExportError(f"onnxplain explains models with one input; {model.name!r} has {len(inputs)}")
    if inputs[0].dtype != "float32":
        raise ExportError(f"the input of {model.name!r} is {inputs[0].dtype}, but onnxplain feeds float32 images")
    return tuple(inputs[0].shape)


def _item_shape(model, signature: tuple[int | None, ...], input_size: tuple[int, int] | None) -> tuple[int, ...]:
    """The shape of one random parity input: the model's, with open height and width from `input_size`."""
    shape = list(signature[1:])
    if input_size is not None and len(shape) >= 2:
        shape[:2] = [given if side is None else side for side, given in zip(shape[:2], input_size, strict=True)]
    if None in shape:
        raise ExportError(f"the input of {model.name!r} has shape {signature}, with sides left open; give the "
                          "height and width to check it at (input_size; --input-size HxW on the command line)")
    return tuple(shape)


def _export(model, signature: tuple[int | None, ...], target: str, opset: int, input_name: str) -> None:
    spec = [tf.TensorSpec((None, *signature[1:]), tf.float32, name=input_name)]
    try:
        with _quiet_tensorflow():
            model.export(target, format="onnx", verbose=False, input_signature=spec, opset_version=opset)
    except OSError:
        raise
    except Exception as error:
        raise ExportError(
            f"Keras could not export {model.name!r} to ONNX opset {opset}: {first_line(error)}. The model uses "
            "a layer or operation that tf2onnx cannot convert; replace it, or try the other opset"
        ) from error


@contextlib.contextmanager
def _quiet_tensorflow():
    """tf2onnx narrates its steps and Keras warns about NumPy 2 patches; keep that off the console."""
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _rewrite(onnx_path: str) -> None:
    model = onnx.load(onnx_path)
    if _activation_last(model.graph):
        onnx.save(model, onnx_path)


def _activation_last(graph: onnx.GraphProto) -> bool:
    """Move an output's Sigmoid or Softmax after the Transpose or Reshape that follows it.

    tf2onnx computes in NCHW and turns the result back into Keras's NHWC after the final
    activation. onnxplain reads an output that a Sigmoid or Softmax node makes as probabilities,
    and any other as logits, to which it would apply the activation a second time. The swapped
    nodes compute the same values, which the parity check confirms. Returns whether it moved any.
    """
    producers = {name: node for node in graph.node for name in node.output}
    uses = Counter(name for node in graph.node for name in node.input)
    uses.update(output.name for output in graph.output)
    moved = False
    for output in graph.output:
        layout = producers.get(output.name)
        if layout is None or layout.op_type not in ("Transpose", "Reshape"):
            continue
        between = layout.input[0]
        activation = producers.get(between)
        if activation is None or activation.op_type not in ("Sigmoid", "Softmax") or uses[between] != 1:
            continue
        if activation.op_type == "Softmax":
            perm = next((list(a.ints) for a in layout.attribute if a.name == "perm"), None)
            if layout.op_type != "Transpose" or perm is None:
                continue  # a reshape may mix the softmax axis with the others
            axis = next((a.i for a in activation.attribute if a.name == "axis"), -1) % len(perm)
            del activation.attribute[:]  # a Softmax has one attribute, its axis
            activation.attribute.append(onnx.helper.make_attribute("axis", perm.index(axis)))
        layout.input[0], activation.input[0] = activation.input[0], between
        layout.output[0], activation.output[0] = between, output.name
        # Nodes stay in topological order: the activation moves to just after the layout change.
        graph.node.remove(activation)
        index = next(i for i, node in enumerate(graph.node) if between in node.output)
        graph.node.insert(index + 1, activation)
        for info in [info for info in graph.value_info if info.name == between]:
            graph.value_info.remove(info)  # its shape was the activation's, before the layout change
        moved = True
    return moved


def _parity(model, item_shape, onnx_path: str, real_inputs, atol: float, seed: int) -> dict[str, float]:
    run = raw_runner(onnx_path, device="cpu")
    rng = np.random.default_rng(seed)
    checks = {f"random, batch {n}": rng.random((n, *item_shape), dtype=np.float32) for n in PARITY_BATCHES}
    checks.update({f"real {i}": np.asarray(batch, dtype=np.float32) for i, batch in enumerate(real_inputs)})
    differences = {}
    for name, batch in checks.items():
        # On the CPU: a GPU would compute convolutions in TF32, a thousandth away from float32.
        with tf.device("/CPU:0"):
            expected = [np.asarray(value) for value in tf.nest.flatten(model(batch, training=False))]
        differences[name] = output_difference(name, run(batch), expected, atol=atol, framework="Keras",
                                              advice="check for custom layers or training-only behaviour")
    return differences
