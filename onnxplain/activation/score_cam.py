"""Score-CAM (Wang et al., 2020): each feature map weighted by how well it alone keeps the target."""

from __future__ import annotations

import numpy as np
from scipy.special import softmax

from onnxplain.activation.base import ActivationMethod, to_image
from onnxplain.batching import batches
from onnxplain.errors import OnnxplainError
from onnxplain.method import Baseline, Progress
from onnxplain.segmenter import Segmenter


class ScoreCam(ActivationMethod):
    """Mask the image with each feature map and weigh the map by the target's score on that image.

    Each channel's feature map is resized to the image, scaled to [0, 1] and multiplied into the
    image; the model runs on each masked image, and the target's score is the class probability
    averaged over the target region (the reference segment for a whole-class target), as the
    class score reads it. The weights are the softmax of those scores over the channels, as in the
    paper; the map is ``ReLU(sum_k weight_k * A_k)`` at the layer's resolution, resized to the
    image. Channels that are constant carry no mask and get no weight. One forward pass per
    channel, in batches.

    Parameters
    ----------
    layer : str, optional
        See `ActivationMethod`.
    temperature : float
        Divides the scores before the softmax; 1 as in the paper (scores lie in [0, 1], so the
        weights stay close to uniform; smaller values sharpen them).
    """

    name = "score-cam"

    def __init__(self, *, layer: str | None = None, temperature: float = 1.0):
        if not temperature > 0:
            raise OnnxplainError(f"temperature must be positive, got {temperature}", parameters=("temperature",))
        super().__init__(layer=layer)
        self.temperature = temperature

    def _low_resolution_map(self, model: Segmenter, baseline: Baseline, layer: str, features: np.ndarray, *,
                            batch_size: int, progress: Progress | None) -> tuple[np.ndarray, np.ndarray, dict]:
        low, high = features.min(axis=(1, 2)), features.max(axis=(1, 2))
        live = np.flatnonzero(high > low)
        region = np.flatnonzero(baseline.reference.region)
        scores = np.zeros(len(features))
        image, target = baseline.image, baseline.target
        for start, stop in batches(len(live), batch_size):
            chosen = live[start:stop]
            masks = (features[chosen] - low[chosen, None, None]) / (high - low)[chosen, None, None]
            upsampled = np.stack([to_image(mask, image.shape[:-1]) for mask in masks])
            outputs = model.predict(image[None] * upsampled[..., None], class_index=target.class_index,
                                    output=target.output)
            scores[chosen] = outputs.probability_at(region).mean(axis=1)
            if progress is not None:
                progress(stop - start)
        weights = np.zeros(len(features))
        if len(live):
            weights[live] = softmax(scores[live] / self.temperature)
        cam = np.maximum(np.tensordot(weights, features, axes=1), 0.0)
        return cam, scores[live], {"channel_scores": scores.round(6).tolist()}
