"""onnxplain: explain what made a segmentation network draw its mask, for any model exported to ONNX.

>>> import onnxplain
>>> from onnxplain import data
>>> model = onnxplain.OnnxModel(data.testnet_model_path(), device="cpu")
>>> result = onnxplain.explain(model, data.load_sample(0).image, method="rise", seed=0)  # doctest: +SKIP
>>> result.map.shape  # doctest: +SKIP
(240, 240)
>>> result.save("out/")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onnxplain.api import create_method, explain, explain_many
    from onnxplain.attribution import Attribution
    from onnxplain.errors import OnnxplainError, PluginError
    from onnxplain.io import read_image, read_mask
    from onnxplain.method import Baseline, Method, make_baseline
    from onnxplain.model import OnnxModel, load_model
    from onnxplain.segmenter import Segmenter
    from onnxplain.targets import Target

_HOMES = {
    "create_method": "api", "explain": "api", "explain_many": "api", "Attribution": "attribution",
    "OnnxplainError": "errors", "PluginError": "errors", "read_image": "io", "read_mask": "io",
    "Baseline": "method", "Method": "method", "make_baseline": "method", "OnnxModel": "model",
    "load_model": "model", "Segmenter": "segmenter", "Target": "targets",
}
"""Where each public name lives. They are imported on first use, so that ``import onnxplain`` (and the
command line's start) stays quick and an interruption then is handled like any other."""


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module 'onnxplain' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"onnxplain.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


try:
    __version__ = version("onnxplain")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "Attribution",
    "Baseline",
    "Method",
    "OnnxModel",
    "OnnxplainError",
    "PluginError",
    "Segmenter",
    "Target",
    "create_method",
    "explain",
    "explain_many",
    "load_model",
    "make_baseline",
    "read_image",
    "read_mask",
]
