"""Two more mask scores: IoU distance and the 95th-percentile Hausdorff distance (HD95)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt

from onnxplain.distances import empty_distance
from onnxplain.outputs import ModelOutput
from onnxplain.scores import Score
from onnxplain.targets import Reference


class IouScore(Score):
    """``1 - |A ∩ B| / |A ∪ B|`` between each output mask and the reference (0 when both are empty)."""

    name = "iou"

    def _distance(self, outputs: ModelOutput, reference: Reference) -> np.ndarray:
        masks = reference.restrict(outputs.mask)
        target = reference.restricted_mask()
        overlap = np.count_nonzero(masks & target, axis=(1, 2))
        union = np.count_nonzero(masks | target, axis=(1, 2))
        return np.where(union == 0, 0.0, 1.0 - overlap / np.maximum(union, 1))


class Hd95Score(Score):
    """95th percentile of the edge-to-edge distances between each output mask and the reference.

    Both directions are pooled, as in medical image segmentation benchmarks. An empty output is as
    far as onnxplain's Hausdorff score puts it: the image diagonal.
    """

    name = "hd95"

    def __init__(self, *, percentile: float = 95.0):
        self.percentile = percentile

    def _distance(self, outputs: ModelOutput, reference: Reference) -> np.ndarray:
        target = reference.restricted_mask()
        target_edge = _edge(target)
        to_target = distance_transform_edt(~target_edge)
        distances = []
        for mask in reference.restrict(outputs.mask):
            if not mask.any():
                distances.append(empty_distance(mask.shape))
                continue
            edge = _edge(mask)
            pooled = np.concatenate([to_target[edge], distance_transform_edt(~edge)[target_edge]])
            distances.append(float(np.percentile(pooled, self.percentile)))
        return np.array(distances)


def _edge(mask: np.ndarray) -> np.ndarray:
    return mask & ~binary_erosion(mask)
