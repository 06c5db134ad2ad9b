"""Read and write module weights: NumPy ``.npz`` (framework-neutral) or PyTorch ``.pt``/``.pth`` state dicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from onnxplain.errors import OnnxplainError

WEIGHTS_PATH = Path(__file__).with_name("testnet_weights.npz")
"""Weights of the bundled testnet U-Net, from which ``onnxplain export torch`` rebuilds its ONNX file."""


def save_npz(module: torch.nn.Module, path: str | Path) -> Path:
    """Write `module`'s state dict as a compressed ``.npz``, one array per entry."""
    arrays = {name: tensor.detach().cpu().numpy() for name, tensor in module.state_dict().items()}
    with open(path, "wb") as handle:  # an open handle stops NumPy from appending ".npz" to the name
        np.savez_compressed(handle, **arrays)
    return Path(path)


def load_weights(module: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load weights from `path` into `module` and return it.

    Parameters
    ----------
    module : torch.nn.Module
        A module of the architecture the weights were saved from.
    path : str or Path
        ``.npz`` (as written by `save_npz`), or ``.pt``/``.pth`` holding a state dict (or a dict
        with a ``'state_dict'`` entry, as training checkpoints often are).

    Returns
    -------
    torch.nn.Module
    """
    path = Path(path)
    if not path.is_file():
        raise OnnxplainError(f"weights file not found: {path}")
    if path.suffix == ".npz":
        with np.load(path) as arrays:
            state = {name: torch.from_numpy(arrays[name]) for name in arrays.files}
    elif path.suffix in (".pt", ".pth"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise OnnxplainError(f"cannot read {path} as PyTorch weights: {error}") from error
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    else:
        raise OnnxplainError(f"weights must be .npz, .pt or .pth, got {path.name}")
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError) as error:
        first = str(error).strip().splitlines()[0]
        raise OnnxplainError(f"the weights in {path} do not fit {type(module).__name__}: {first}") from error
    return module
