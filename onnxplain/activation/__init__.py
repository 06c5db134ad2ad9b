"""Activation methods: maps read from a layer's feature maps, on onnxruntime alone (no gradients)."""
