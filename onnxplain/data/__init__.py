"""The bundled testnet model and sample images, usable without a deep-learning framework.

``testnet.onnx`` is the U-Net of ``exporters/onnxplain_torch`` trained on generated testnet data
(its training log is ``testnet_training.json`` beside it); ``samples/`` holds a dozen testnet
samples in the dataset layout of `onnxplain.testnet.write_dataset`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from onnxplain import testnet
from onnxplain.errors import OnnxplainError

_HERE = Path(str(files(__name__)))
SAMPLES_SEED = 7
"""The testnet seed the bundled samples were generated with."""


def testnet_model_path() -> Path:
    """Path of the bundled testnet U-Net (ONNX, input (N, 1, 240, 240) in [0, 1], logits out)."""
    return _HERE / "testnet.onnx"


def testnet3d_model_path() -> Path:
    """Path of the bundled 3-D testnet U-Net (ONNX, input (N, 1, 48, 48, 48) in [0, 1], logits out)."""
    return _HERE / "testnet3d.onnx"


def samples_dir() -> Path:
    """Folder of the bundled testnet samples."""
    return _HERE / "samples"


def sample_names() -> list[str]:
    """File names of the bundled samples, in order."""
    return sorted(p.name for p in (samples_dir() / "images").glob("*.png"))


def load_sample(index: int = 0) -> testnet.TestnetSample:
    """Read bundled sample number `index`.

    Examples
    --------
    >>> sample = load_sample(0)
    >>> sample.image.shape, sample.decider_shape in ("circle", "square")
    ((240, 240), True)
    """
    names = sample_names()
    if not 0 <= index < len(names):
        raise OnnxplainError(f"there are {len(names)} bundled samples; pick an index from 0 to {len(names) - 1}")
    return testnet.read_sample(samples_dir(), names[index])
