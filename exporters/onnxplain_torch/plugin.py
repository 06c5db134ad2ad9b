"""The ``torch`` exporter plugin: ``onnxplain export torch ...``.

This module imports PyTorch only when the command runs, so the plugin lists and shows its help
where PyTorch is not installed, and then says how to install it.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from onnxplain.errors import OnnxplainError
from onnxplain.exporter import Exporter


class TorchExporter(Exporter):
    """Exports a PyTorch model (a factory plus weights, or a TorchScript file) to ONNX."""

    name = "torch"
    framework = "PyTorch"
    install_hint = 'pip install "onnxplain[torch]"'

    def command(self) -> click.Command:
        return export_torch


def _import_torch():
    try:
        return importlib.import_module("torch")
    except ImportError as error:
        hint = TorchExporter.install_hint
        raise OnnxplainError(f"exporting from PyTorch needs PyTorch; install it with: {hint}") from error


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a shape like 1,3,256,256", param_hint="--input-shape") from None
    if len(shape) < 2 or min(shape) < 1:
        raise click.BadParameter(f"{text!r} needs a batch axis and positive sizes", param_hint="--input-shape")
    return shape


def _factory(spec: str):
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise OnnxplainError(
            f"--factory takes MODULE:FUNCTION, such as onnxplain_torch.unet:testnet_unet; got {spec!r}"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise OnnxplainError(f"cannot find {spec}: {error}") from error
    return factory


@click.command("torch")
@click.option("--factory", metavar="MODULE:FUNCTION",
              help="Function returning the nn.Module (called without arguments).")
@click.option("--weights", type=click.Path(path_type=Path), help="Weights for the factory's module: .npz, .pt or .pth.")
@click.option("--torchscript", type=click.Path(path_type=Path), help="A TorchScript file, instead of --factory.")
@click.option("--input-shape", required=True, help="Shape of one input batch, such as 1,1,240,240.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The .onnx file to write.")
@click.option("--opset", type=click.IntRange(min=17), default=18, show_default=True, help="ONNX opset.")
@click.option("--atol", type=float, default=1e-4, show_default=True,
              help="Largest difference allowed between onnxruntime and PyTorch outputs.")
@click.option("--real-input", "real_inputs", multiple=True, type=click.Path(path_type=Path),
              help="An image to check parity on as well (read in [0, 1], to the input's channels); repeatable.")
def export_torch(factory, weights, torchscript, input_shape, out, opset, atol, real_inputs):
    """Export a PyTorch model to ONNX with a dynamic batch axis, then check it.

    The file is checked with onnx.checker and run with onnxruntime on random inputs (batch 1 and 8)
    and on --real-input images; any output further than --atol from PyTorch's fails the export,
    and no file is written.
    """
    torch = _import_torch()
    from onnxplain_torch.export import export_module
    from onnxplain_torch.weights import load_weights

    shape = _shape(input_shape)
    if (factory is None) == (torchscript is None):
        raise click.UsageError("give either --factory (with --weights) or --torchscript")
    if torchscript is not None:
        if not torchscript.is_file():
            raise OnnxplainError(f"TorchScript file not found: {torchscript}")
        try:
            module = torch.jit.load(str(torchscript), map_location="cpu")
        except Exception as error:
            raise OnnxplainError(f"{torchscript} is not a TorchScript file: {error}") from error
    else:
        module = _factory(factory)()
        if weights is not None:
            load_weights(module, weights)
    example = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    real = [_image_tensor(path, shape, torch) for path in real_inputs]
    report = export_module(module, example, out, opset=opset, atol=atol, real_inputs=real)
    worst = max(report.max_abs_diff.values())
    click.echo(f"wrote {report.path} (opset {report.opset}); onnxruntime matches PyTorch within {worst:.2e} "
               f"on {len(report.max_abs_diff)} checked inputs")


def _image_tensor(path: Path, shape: tuple[int, ...], torch):
    from onnxplain.io import read_image

    channels_first = shape[1] in (1, 3)
    channels = shape[1] if channels_first else shape[-1]
    image = read_image(path, channels=channels)  # (H, W, C)
    expected = shape[2:] if channels_first else shape[1:3]
    if image.shape[:2] != tuple(expected):
        raise OnnxplainError(f"{path} is {image.shape[1]}x{image.shape[0]} but the input shape {shape} needs "
                             f"{expected[1]}x{expected[0]}")
    array = image.transpose(2, 0, 1) if channels_first else image
    return torch.from_numpy(array.copy())[None]
