"""Shared fixtures: tiny ONNX models, the bundled testnet model, a CLI runner."""

from __future__ import annotations

import numpy as np
import onnx_models
import pytest
from click.testing import CliRunner
from PIL import Image

from onnxplain import data


@pytest.fixture(autouse=True, scope="session")
def _cache_folder(tmp_path_factory):
    """Optimised graphs and reduced models go to a folder of the test run, not the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ONNXPLAIN_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture
def brightness(tmp_path):
    """Factory: build a `brightness_model` ONNX file with the given options and return its path."""
    counter = iter(range(1000))

    def build(**options):
        return onnx_models.brightness_model(tmp_path / f"brightness{next(counter)}.onnx", **options)

    return build


@pytest.fixture
def quadrant(tmp_path):
    return onnx_models.quadrant_model(tmp_path / "quadrant.onnx")


@pytest.fixture
def bright_square():
    """A 32x32 grayscale image, (H, W, 1), with a bright square at rows 8-15, columns 10-19."""
    image = np.zeros((32, 32, 1), np.float32)
    image[8:16, 10:20] = 0.9
    return image


@pytest.fixture
def square_png(tmp_path, bright_square):
    """`bright_square` as an 8-bit grayscale PNG file."""
    path = tmp_path / "square.png"
    Image.fromarray((bright_square[..., 0] * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="session")
def testnet_model():
    return data.testnet_model_path()


@pytest.fixture
def runner():
    return CliRunner()
