"""The ``keras`` exporter plugin: ``onnxplain export keras MODEL.keras --out model.onnx``.

This module imports TensorFlow only when the command runs, so the plugin lists and shows its help
where TensorFlow is not installed, and then says how to install it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path

import click

from onnxplain.errors import OnnxplainError, first_line
from onnxplain.exporter import Exporter

MIN_KERAS = (3, 12)
"""The first Keras whose ONNX export takes an opset."""


class KerasExporter(Exporter):
    """Exports a Keras 3 model (a ``.keras`` or ``.h5`` file) to ONNX, through TensorFlow and tf2onnx."""

    name = "keras"
    framework = "Keras/TensorFlow"
    install_hint = 'pip install "onnxplain[tensorflow]"'

    def command(self) -> click.Command:
        return export_keras_command


def _import_tensorflow() -> None:
    hint = KerasExporter.install_hint
    # TensorFlow's C++ side logs even a machine without a CUDA driver as an error; its real failures
    # reach the exporter as Python exceptions. Unless the user chose a level, keep it quiet.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with _stderr_to_devnull():
            importlib.import_module("tensorflow")
            keras = importlib.import_module("keras")
            importlib.import_module("tf2onnx")
    except ImportError as error:
        raise OnnxplainError(f"exporting from Keras needs TensorFlow, Keras 3 and tf2onnx ({error.name or error} "
                             f"is missing); install them with: {hint}") from error
    except Exception as error:  # a broken install, such as a protobuf that TensorFlow cannot use
        raise OnnxplainError(f"TensorFlow is installed but fails to import: {first_line(error)}; reinstall it "
                             f"with: {hint}") from error
    version = tuple(int(part) for part in keras.__version__.split(".")[:2] if part.isdigit())
    if version < MIN_KERAS:
        raise OnnxplainError(f"exporting from Keras needs Keras {'.'.join(map(str, MIN_KERAS))} or newer, found "
                             f"{keras.__version__}; install it with: {hint}")


@contextlib.contextmanager
def _stderr_to_devnull():
    """Send the process's standard error to /dev/null for the duration.

    TensorFlow's C++ start-up notes (CPU instructions, no CUDA driver) ignore TF_CPP_MIN_LOG_LEVEL
    and would bury the one line this command prints. Errors still arrive as Python exceptions.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no standard error to keep clean
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        height, width = (int(v) for v in text.lower().replace("x", ",").split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a size like 240x240 (height x width)",
                                 param_hint="--input-size") from None
    if min(height, width) < 1:
        raise click.BadParameter(f"{text!r} needs positive sides", param_hint="--input-size")
    return height, width


@click.command("keras")
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The .onnx file to write.")
@click.option("--opset", type=click.IntRange(min=17, max=18), default=18, show_default=True, help="ONNX opset.")
@click.option("--atol", type=float, default=1e-4, show_default=True,
              help="Largest difference allowed between onnxruntime and Keras outputs.")
@click.option("--real-input", "real_inputs", multiple=True, type=click.Path(path_type=Path),
              help="An image to check parity on as well (read in [0, 1], to the input's channels); repeatable.")
@click.option("--input-size", metavar="HxW",
              help="Height and width to check at, for models whose input leaves them open (the file keeps them open).")
def export_keras_command(model_path, out, opset, atol, real_inputs, input_size):
    """Export a Keras model (MODEL: .keras or .h5) to ONNX with a dynamic batch axis, then check it.

    The file is checked with onnx.checker and run with onnxruntime on random inputs (batch 1 and 8)
    and on --real-input images; any output further than --atol from Keras's fails the export,
    and no file is written.
    """
    size = _size(input_size)
    _import_tensorflow()
    from onnxplain_keras.export import export_keras, input_shape, load_model

    model = load_model(model_path)
    shape = input_shape(model)
    real = [_image_batch(path, shape) for path in real_inputs]
    report = export_keras(model, out, opset=opset, atol=atol, real_inputs=real, input_size=size)
    worst = max(report.max_abs_diff.values())
    click.echo(f"wrote {report.path} (opset {report.opset}); onnxruntime matches Keras within {worst:.2e} "
               f"on {len(report.max_abs_diff)} checked inputs")


def _image_batch(path: Path, shape: tuple):
    """An image file as a batch of one, for a channels-last input of `shape` (batch axis first)."""
    from onnxplain.io import read_image

    if len(shape) != 4 or shape[3] not in (1, 3):
        raise OnnxplainError(f"--real-input needs a model input of (batch, height, width, 1 or 3 channels), "
                             f"not {shape}")
    image = read_image(path, channels=shape[3])
    if any(side is not None and side != got for side, got in zip(shape[1:3], image.shape[:2], strict=True)):
        raise OnnxplainError(f"{path} is {image.shape[1]}x{image.shape[0]} but the model's input {shape} needs "
                             f"{shape[2]}x{shape[1]}")
    return image[None]
