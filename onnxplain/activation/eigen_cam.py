"""Eigen-CAM (Muhammad & Yeasin, 2020): the first principal component of a layer's feature maps."""

from __future__ import annotations

import numpy as np

from onnxplain.activation.base import ActivationMethod
from onnxplain.method import Baseline, Progress
from onnxplain.resizing import resize_batch
from onnxplain.segmenter import Segmenter


class EigenCam(ActivationMethod):
    """Project every position's feature vector on the first principal direction of the layer.

    The feature maps (C, h, w) are taken as h·w vectors of C values, centred, and projected on their
    first right singular vector. It needs no forward pass beyond the one that reads the layer, and
    it does not depend on the target: it shows what the layer responds to most, for any class. The
    sign of a principal direction is arbitrary; it is chosen so that the map correlates positively
    with the target region (the region of interest, or the model's segment), or with the layer's
    summed activation where the region is empty or everything. (Following the summed activation
    alone drew the text detector's text lines negative.) The record holds the share of the variance that the
    direction explains.

    Parameters
    ----------
    layer : str, optional
        See `ActivationMethod`.
    """

    name = "eigen-cam"

    def _low_resolution_map(self, model: Segmenter, baseline: Baseline, layer: str, features: np.ndarray, *,
                            batch_size: int, progress: Progress | None) -> tuple[np.ndarray, np.ndarray, dict]:
        channels, height, width = features.shape
        vectors = features.reshape(channels, -1).T
        centred = vectors - vectors.mean(axis=0)
        _, singular, directions = np.linalg.svd(centred, full_matrices=False)
        projection = centred @ directions[0]
        # A principal direction has no sign of its own: point it where the target region lies (the
        # region brought to the layer's size), else along the summed activation.
        region = resize_batch(baseline.reference.region[None].astype(np.float32), (height, width), axes=(1, 2))[0]
        guide = region.ravel() if region.max() > region.min() else vectors.sum(axis=1)
        if np.dot(projection, guide - guide.mean()) < 0:
            projection = -projection
        explained = float(singular[0] ** 2 / max(float((singular**2).sum()), 1e-300))
        return projection.reshape(height, width), np.zeros(0), {"explained_variance": round(explained, 4)}
