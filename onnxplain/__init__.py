"""onnxplain: explain what made a segmentation network draw its mask, for any model exported to ONNX.

>>> import onnxplain
>>> from onnxplain import data
>>> model = onnxplain.OnnxModel(data.testnet_model_path(), device="cpu")
>>> result = onnxplain.explain(model, data.load_sample(0).image, method="rise", seed=0)  # doctest: +SKIP
>>> result.save("out/")  # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from onnxplain.engine import explain
from onnxplain.errors import OnnxplainError, PluginError
from onnxplain.io import read_image, read_mask
from onnxplain.model import OnnxModel, load_model
from onnxplain.result import Explanation
from onnxplain.targets import Target

try:
    __version__ = version("onnxplain")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "Explanation",
    "OnnxModel",
    "OnnxplainError",
    "PluginError",
    "Target",
    "explain",
    "load_model",
    "read_image",
    "read_mask",
]
