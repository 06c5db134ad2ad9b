"""What every activation method shares: the layer, reading its feature maps, and bringing a map to the image."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Protocol

import numpy as np

from onnxplain.attribution import Attribution
from onnxplain.errors import OnnxplainError
from onnxplain.method import Baseline, Method, Progress
from onnxplain.resizing import resize_batch
from onnxplain.segmenter import Segmenter


class ServesActivations(Protocol):
    """A model that can show a layer's feature maps (`onnxplain.OnnxModel` does)."""

    def layer(self, name: str | None = None) -> Any: ...

    def activations(self, images: np.ndarray, layer: str) -> np.ndarray: ...

    def predict_with_layer(self, images: np.ndarray, layer: str, activations: np.ndarray, *,
                           class_index: int | None = None, output: int | str | None = None) -> Any: ...


class ActivationMethod(Method):
    """A method that reads the feature maps of one layer of the model.

    Parameters
    ----------
    layer : str, optional
        The feature map to read (``onnxplain layers MODEL`` lists them); the one the model's head
        reads when omitted.
    """

    needs = frozenset({"predictions", "activations"})

    def __init__(self, *, layer: str | None = None):
        self.layer = layer

    def _attribute(
        self, model: Segmenter, baseline: Baseline, *, batch_size: int, progress: Progress | None
    ) -> Attribution:
        reader: ServesActivations = model  # type: ignore[assignment]  # `needs` was checked against `serves`
        layer = reader.layer(self.layer)
        features = reader.activations(baseline.image[None], layer.name)[0].astype(np.float64)
        if features.ndim != 3:
            raise OnnxplainError(f"layer {layer.name!r} gives activations shaped {features.shape[1:]}, not a feature "
                                 "map (C, h, w); choose another layer", parameters=("layer",))
        low, values, record = self._low_resolution_map(model, baseline, layer.name, features, batch_size=batch_size,
                                                       progress=progress)
        saliency = to_image(low, baseline.image.shape[:-1])
        record["layer"] = {"name": layer.name, "op": layer.op, "shape": list(features.shape)}
        return Attribution(map=saliency, image=baseline.image, segment=baseline.reference.mask,
                           region=baseline.reference.roi, values=values,
                           arrays={"layer_map": low.astype(np.float32)}, record=record)

    @abstractmethod
    def _low_resolution_map(self, model: Segmenter, baseline: Baseline, layer: str, features: np.ndarray, *,
                            batch_size: int, progress: Progress | None) -> tuple[np.ndarray, np.ndarray, dict]:
        """From the feature maps (C, h, w) of `layer`: the map at the layer's resolution (h, w), the score of each
        image the method ran (none for methods that run none), and record entries."""


def to_image(low: np.ndarray, spatial: tuple[int, ...]) -> np.ndarray:
    """A map at a layer's resolution (h, w), bilinearly resized to the image's `spatial` size, float32."""
    return resize_batch(low[None].astype(np.float32), tuple(spatial), axes=(1, 2))[0]  # type: ignore[arg-type]
