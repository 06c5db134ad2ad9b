"""PyTorch side of onnxplain: the ONNX exporter, the testnet U-Net and its training.

Installed with ``pip install "onnxplain[torch]"``; the core ``onnxplain`` package never imports it.
"""
