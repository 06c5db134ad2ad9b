"""onnxplain: explain what made a segmentation network draw its mask, for any model exported to ONNX.

>>> import onnxplain
>>> from onnxplain import data
>>> model = onnxplain.OnnxModel(data.testnet_model_path(), device="cpu")
>>> result = onnxplain.explain(model, data.load_sample(0).image, method="rise", seed=0)  # doctest: +SKIP
>>> result.map.shape  # doctest: +SKIP
(240, 240)
>>> result.save("out/")  # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from onnxplain.api import create_method, explain, explain_many
from onnxplain.attribution import Attribution
from onnxplain.errors import OnnxplainError, PluginError
from onnxplain.io import read_image, read_mask
from onnxplain.method import Baseline, Method, make_baseline
from onnxplain.model import OnnxModel, load_model
from onnxplain.segmenter import Segmenter
from onnxplain.targets import Target

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
