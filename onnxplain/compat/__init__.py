"""The 2019 ``interpret_segmentation`` API on onnxplain: scripts port by changing their imports.

``from onnxplain.compat import hdm`` replaces ``from interpret_segmentation import hdm``, and
``from onnxplain.compat.rise import SegmentationRISE`` replaces its RISE import. The model is an
ONNX file or an `onnxplain.OnnxModel` instead of a PyTorch module.
"""
