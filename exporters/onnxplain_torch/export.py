"""Export a PyTorch module to ONNX and prove that onnxruntime computes what PyTorch computes."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch

from onnxplain.exporter import PARITY_BATCHES, ExportError, ExportReport, output_difference
from onnxplain.io import atomic_path
from onnxplain.model import raw_runner


def export_module(
    module: torch.nn.Module,
    example_input: torch.Tensor,
    path: str | Path,
    *,
    opset: int = 18,
    atol: float = 1e-4,
    real_inputs: Sequence[torch.Tensor] = (),
    input_name: str = "image",
    output_name: str = "logits",
    seed: int = 0,
) -> ExportReport:
    """Export `module` to ONNX with a dynamic batch axis, check the file, and check parity.

    The file is checked with ``onnx.checker`` (full check), then run with onnxruntime on random
    inputs at batch sizes 1 and 8 and on `example_input` and `real_inputs`; every output must match
    PyTorch within `atol`. The file appears at `path` only if all checks pass.

    Parameters
    ----------
    module : torch.nn.Module or torch.jit.ScriptModule
        The model; put in eval mode.
    example_input : torch.Tensor
        One input batch of the shape the model takes (its batch size does not matter).
    path : str or Path
        Where to write the ``.onnx`` file.
    opset : int
        ONNX opset, at least 17.
    atol : float
        Largest absolute difference allowed between onnxruntime and PyTorch outputs.
    real_inputs : sequence of torch.Tensor
        More inputs to check parity on, such as real images.
    input_name, output_name : str
        Names of the ONNX input and output.
    seed : int
        Seed of the random parity inputs.

    Returns
    -------
    ExportReport

    Raises
    ------
    ExportError
        When PyTorch cannot export the module, the checker rejects the file, or outputs differ.
    """
    if opset < 17:
        raise ExportError(f"opset must be at least 17, got {opset}")
    path = Path(path)
    module = module.eval()
    with atomic_path(path) as temporary:
        _export(module, example_input, str(temporary), opset, input_name, output_name)
        try:
            onnx.checker.check_model(str(temporary), full_check=True)
        except Exception as error:
            raise ExportError(f"the exported file fails onnx.checker: {error}") from error
        differences = _parity(module, example_input, str(temporary), real_inputs, atol, seed)
    return ExportReport(path=path, opset=opset, max_abs_diff=differences)


def _export(module, example_input, target: str, opset: int, input_name: str, output_name: str) -> None:
    scripted = isinstance(module, torch.jit.ScriptModule)
    options = {"input_names": [input_name], "output_names": [output_name], "opset_version": opset}
    if scripted:
        # TorchScript files go through the TorchScript-based exporter, the only one that reads them.
        options.update(dynamo=False, dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}})
    else:
        options.update(
            dynamo=True,
            external_data=False,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
            verbose=False,
        )
    try:
        with _quiet_torch_onnx():
            torch.onnx.export(module, (example_input,), target, **options)
    except Exception as error:
        raise ExportError(
            f"PyTorch could not export {type(module).__name__} to ONNX opset {opset}: {_reason(error)}. "
            "The module uses an operation or Python code that torch.export cannot trace or ONNX cannot "
            "express; replace it, or export from a TorchScript file (--torchscript)"
        ) from error


def _reason(error: Exception) -> str:
    """The one informative line of an exporter error (its report names the failing operation)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    _, _, summary = text.partition("## Exception summary")
    for line in summary.splitlines():
        if line.strip():
            return re.sub(r"^<class '[^']*'>: ", "", line.strip())[:300]
    return (text.splitlines()[0] if text else type(error).__name__)[:300]


@contextlib.contextmanager
def _quiet_torch_onnx():
    """The exporter narrates its steps and warns about optional packages; keep that off the console."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _parity(module, example_input, onnx_path: str, real_inputs, atol: float, seed: int) -> dict[str, float]:
    run = raw_runner(onnx_path, device="cpu")
    generator = torch.Generator().manual_seed(seed)
    item_shape = tuple(example_input.shape[1:])
    checks = {f"random, batch {n}": torch.rand((n, *item_shape), generator=generator) for n in PARITY_BATCHES}
    checks["example"] = example_input
    checks.update({f"real {i}": tensor for i, tensor in enumerate(real_inputs)})
    differences = {}
    with torch.no_grad():
        for name, tensor in checks.items():
            expected = module(tensor)
            expected = expected if isinstance(expected, (tuple, list)) else [expected]
            actual = run(tensor.detach().cpu().numpy().astype(np.float32))
            differences[name] = output_difference(
                name, actual, [e.detach().cpu().numpy() for e in expected], atol=atol, framework="PyTorch",
                advice="check for training-mode layers or data-dependent control flow")
    return differences
