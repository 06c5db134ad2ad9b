"""TensorFlow side of onnxplain: the ONNX exporter for Keras models.

Installed with ``pip install "onnxplain[tensorflow]"``; the core ``onnxplain`` package never imports it.
"""
