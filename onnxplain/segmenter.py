"""The model protocol methods are written against: a segmenter that predicts class probabilities.

A method never sees onnxruntime, input layouts or normalisation: it hands a segmenter images in
image space and reads back, for one class of one output, a mask and (lazily) probabilities. The
spatial shape is a tuple of any length, so 2-D images and 3-D volumes take the same path.
`onnxplain.model.OnnxModel` is the ONNX segmenter.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from onnxplain.outputs import ModelOutput

CAPABILITIES = ("predictions", "activations", "gradients")
"""What a method may need from a model: its outputs, its intermediate activations, its gradients."""


@runtime_checkable
class Segmenter(Protocol):
    """A segmentation model as methods see it.

    Contract:

    - images are float32 arrays in image space shaped ``(*spatial, C)`` (one) or ``(n, *spatial, C)``
      (a batch); `check_image` accepts an image or says why the model cannot take it;
    - `predict` returns a `ModelOutput` of n items for one class of one output, whose mask and
      probabilities have the output's spatial shape; it never changes its input;
    - `serves` lists which of `CAPABILITIES` the model can provide;
    - `batch_size` is how many images one forward pass takes at most (memory grows with it);
    - optionally, ``prepare(image, *, class_index, output)``: called by
      `onnxplain.method.make_baseline` with the checked unperturbed image, before any prediction of
      it, for a model that must adapt to the image or check itself on it (`OnnxModel` makes and
      checks a reduced-precision model there); it raises `OnnxplainError` to refuse the image. A
      model without it is run as it is. (It is not a member of this protocol, so models without
      it still satisfy ``isinstance(model, Segmenter)``.)
    """

    serves: frozenset[str]
    batch_size: int

    @property
    def spatial_shape(self) -> tuple[int | None, ...]:
        """Spatial size the model takes, one entry per axis, None where any size goes."""
        ...

    def check_image(self, image: np.ndarray) -> np.ndarray:
        """The image as float32 ``(*spatial, C)``, or an `OnnxplainError` saying why the model cannot take it."""
        ...

    def predict(
        self, images: np.ndarray, *, class_index: int | None = None, output: int | str | None = None
    ) -> ModelOutput:
        """Masks and lazy probabilities of one class of one output, for a batch of images."""
        ...

    def describe(self) -> dict:
        """Everything needed to load the model the same way again, as plain data."""
        ...
