"""What a segmentation output means: the probability of the chosen class, and a mask, per pixel."""

from __future__ import annotations

import numpy as np
from scipy.special import expit, softmax

from onnxplain.errors import OnnxplainError

ACTIVATIONS = ("auto", "sigmoid", "softmax", "none")
_PROBABILITY_SLACK = 1e-3  # outputs read as probabilities may stray this far from [0, 1] by rounding


class ModelOutput:
    """The model's answer for a batch of images, for the chosen output and class.

    Give either `probability` or `logits` (of a sigmoid): probabilities are then computed only
    where they are read, so scores that need masks alone, or a few pixels, do not pay for them.

    Attributes
    ----------
    mask : ndarray of bool, shape (n, *output spatial)
        Pixels (voxels) segmented as the chosen class.
    probability : ndarray of float32, shape (n, *output spatial)
        Probability of the chosen class at every output pixel.
    """

    def __init__(self, *, mask: np.ndarray, probability: np.ndarray | None = None, logits: np.ndarray | None = None):
        if (probability is None) == (logits is None):
            raise ValueError("a ModelOutput takes either probabilities or logits")
        self.mask = mask
        self._probability = probability
        self._logits = logits

    @property
    def probability(self) -> np.ndarray:
        if self._probability is None:
            self._probability = expit(self._logits)
        return self._probability

    def probability_at(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities at flat pixel indices `pixels`, shaped (n, len(pixels))."""
        if self._probability is None and self._logits is not None:
            return expit(self._logits.reshape(len(self), -1)[:, pixels])
        return self.probability.reshape(len(self), -1)[:, pixels]

    def __len__(self) -> int:
        return len(self.mask)


class OutputReader:
    """Reads raw output batches of one model output as `ModelOutput` for one class.

    Parameters
    ----------
    name : str
        The output's name, for messages.
    channels_last : bool
        Whether an output with a channel axis has it last, (N, H, W, C), rather than after the batch.
    spatial_rank : int
        Spatial axes of the output: 2 for images, 3 for volumes.
    class_index : int
        Channel (class) to read.
    activation : {'auto', 'sigmoid', 'softmax', 'none'}
        See `onnxplain.model.OnnxModel`; ``'auto'`` is settled by the first batch.
    threshold : float, optional
        Probability above which a pixel belongs to the class; 0.5, or argmax for softmax, when omitted.
    producer : str, optional
        Type of the node that computes the output (``'Sigmoid'`` means probabilities already).
    """

    def __init__(self, name: str, *, channels_last: bool, spatial_rank: int = 2, class_index: int = 0,
                 activation: str = "auto", threshold: float | None = None, producer: str | None = None):
        if activation not in ACTIVATIONS:
            raise OnnxplainError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
        if class_index < 0:
            raise OnnxplainError(f"class index must be non-negative, got {class_index}")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise OnnxplainError(f"threshold must be a probability in [0, 1], got {threshold}")
        self.name = name
        self.channels_last = channels_last
        self.spatial_rank = spatial_rank
        self.class_index = class_index
        self.activation = activation
        self.threshold = threshold
        self.producer = producer
        self.num_classes: int | None = None  # known after the first batch

    def read(self, raw: np.ndarray, class_index: int | None = None) -> ModelOutput:
        """Turn a raw output batch into probabilities and a mask of class `class_index` (default: this reader's)."""
        class_index = self.class_index if class_index is None else class_index
        # A sum is NaN or infinite when any value is (or, rarely, when huge values overflow): check
        # every value only then, which saves a full boolean copy of the output per batch.
        with np.errstate(invalid="ignore", over="ignore"):
            total = raw.sum(dtype=np.float64)
        if not np.isfinite(total) and not np.isfinite(raw).all():
            raise OnnxplainError(
                f"the model output '{self.name}' contains NaN or infinite values; check the input "
                "normalisation (scale, mean, std) and that the model works on this kind of image",
                parameters=("scale", "mean", "std"),
            )
        logits = self.channels_first(raw)
        if logits.dtype.kind in "iub":
            return self._labels(logits, class_index)
        classes = logits.shape[1]
        if self.num_classes is None:
            self.num_classes = classes
        if self.activation == "auto":
            if self.producer in ("Sigmoid", "Softmax"):
                self.activation = "none"
            else:
                self.activation = "sigmoid" if classes == 1 else "softmax"
        if class_index >= classes:
            raise OnnxplainError(
                f"class {class_index} does not exist: output '{self.name}' has {classes} "
                f"channel(s), so the class must be between 0 and {classes - 1}",
                parameters=("class_index",),
            )
        threshold = 0.5 if self.threshold is None else self.threshold
        if self.activation == "softmax":
            probabilities = softmax(logits.astype(np.float32, copy=False), axis=1)
            probability = np.ascontiguousarray(probabilities[:, class_index])
            if self.threshold is None and classes > 1:
                mask = probabilities.argmax(axis=1) == class_index
            else:
                mask = probability > threshold
            return ModelOutput(mask=mask, probability=probability)
        scores = logits[:, class_index].astype(np.float32, copy=False)
        if self.activation == "none":
            if scores.min() < -_PROBABILITY_SLACK or scores.max() > 1 + _PROBABILITY_SLACK:
                raise OnnxplainError(
                    f"output '{self.name}' holds values from {scores.min():.3g} to {scores.max():.3g}, "
                    "not probabilities; use the sigmoid or softmax activation",
                    parameters=("activation",),
                )
            return ModelOutput(mask=scores > threshold, probability=np.ascontiguousarray(scores))
        # Sigmoid: compare logits with the threshold's logit, and compute probabilities only if asked.
        with np.errstate(divide="ignore"):
            cut = np.log(threshold) - np.log1p(-threshold)
        return ModelOutput(mask=scores > cut, logits=scores)

    @property
    def threshold_used(self) -> float | str | None:
        """The threshold as applied: a probability, ``'argmax'`` for softmax of several classes,
        ``'labels'`` for label maps, or None before the first batch settles the activation."""
        if self.activation == "labels":
            return "labels"
        if self.threshold is not None:
            return self.threshold
        if self.activation == "auto":
            return None
        return "argmax" if self.activation == "softmax" and (self.num_classes or 1) > 1 else 0.5

    def _labels(self, labels: np.ndarray, class_index: int) -> ModelOutput:
        """An integer output holds a class number per pixel (an ArgMax at the end of the model)."""
        if labels.shape[1] != 1:
            raise OnnxplainError(
                f"output '{self.name}' holds integers in {labels.shape[1]} channels; a label map has one"
            )
        self.activation = "labels"
        mask = labels[:, 0] == class_index
        return ModelOutput(mask=mask, probability=mask.astype(np.float32))

    def channels_first(self, raw: np.ndarray) -> np.ndarray:
        """The output with its channels right after the batch axis (one channel added where it has none)."""
        if raw.ndim == self.spatial_rank + 1:
            return raw[:, None]
        if raw.ndim == self.spatial_rank + 2:
            return np.moveaxis(raw, -1, 1) if self.channels_last else raw
        expected = "(N, C, H, W), (N, H, W, C) or (N, H, W)" if self.spatial_rank == 2 else \
            "(N, C, D, H, W), (N, D, H, W, C) or (N, D, H, W)"
        raise OnnxplainError(
            f"output '{self.name}' has shape {raw.shape}; onnxplain explains segmentation outputs "
            f"shaped {expected}; choose another output",
            parameters=("output",),
        )
