"""Ablation-CAM (Desai & Ramaswamy, 2020): each feature map weighted by what the target loses without it."""

from __future__ import annotations

import numpy as np

from onnxplain.activation.base import ActivationMethod, ServesActivations
from onnxplain.batching import batches
from onnxplain.method import Baseline, Progress
from onnxplain.segmenter import Segmenter


class AblationCam(ActivationMethod):
    """Zero one channel of the layer at a time and run the rest of the network on what remains.

    The target's score is the class probability averaged over the target region (the reference
    segment for a whole-class target). Channel k's weight is the score's relative drop when the
    channel is zeroed, ``(y - y_k) / y``; the map is ``ReLU(sum_k weight_k * A_k)`` at the layer's
    resolution, resized to the image. The rest of the network, skip connections included, runs
    on the changed layer (`onnxplain.OnnxModel.predict_with_layer`). One forward pass per channel,
    in batches.

    Parameters
    ----------
    layer : str, optional
        See `ActivationMethod`.
    """

    name = "ablation-cam"

    def _low_resolution_map(self, model: Segmenter, baseline: Baseline, layer: str, features: np.ndarray, *,
                            batch_size: int, progress: Progress | None) -> tuple[np.ndarray, np.ndarray, dict]:
        reader: ServesActivations = model  # type: ignore[assignment]
        region = np.flatnonzero(baseline.reference.region)
        score = float(baseline.output.probability_at(region).mean())
        image, target = baseline.image, baseline.target
        dropped = np.empty(len(features))
        for start, stop in batches(len(features), batch_size):
            changed = np.repeat(features[None].astype(np.float32), stop - start, axis=0)
            changed[np.arange(stop - start), np.arange(start, stop)] = 0.0
            outputs = reader.predict_with_layer(np.repeat(image[None], stop - start, axis=0), layer, changed,
                                                class_index=target.class_index, output=target.output)
            dropped[start:stop] = outputs.probability_at(region).mean(axis=1)
            if progress is not None:
                progress(stop - start)
        weights = (score - dropped) / max(score, 1e-12)
        cam = np.maximum(np.tensordot(weights, features, axes=1), 0.0)
        return cam, dropped, {"channel_weights": weights.round(6).tolist()}
