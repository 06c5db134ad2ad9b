"""Example onnxplain plugins: a blur perturbation and IoU and HD95 scores."""
