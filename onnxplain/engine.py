"""Stream masks in batches through the model, score each output, aggregate scores into a map."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from onnxplain.errors import OnnxplainError, PluginError
from onnxplain.model import OnnxModel, load_model
from onnxplain.perturbation import Perturbation
from onnxplain.registry import plugins
from onnxplain.result import Explanation
from onnxplain.scores import Score
from onnxplain.targets import Reference, Target, make_reference

Progress = Callable[[int], None]
"""Called with the number of perturbed images done after each forward pass."""


def explain(
    model: OnnxModel | str | Path,
    image: np.ndarray,
    *,
    method: str | Perturbation = "hdm",
    score: str | Score | None = None,
    target: Target | None = None,
    segment: np.ndarray | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    progress: Progress | None = None,
    keep_pixel_scores: bool = False,
) -> Explanation:
    """Explain which pixels of `image` made `model` segment what it segmented.

    Every mask of the perturbation is applied to the image, the perturbed images run through the
    model `batch_size` at a time, and each output is scored against the reference. Memory stays
    flat in the number of masks: masks are made lazily and only running sums are kept.

    The map depends on the perturbation's weighting:

    - ``'occluded'`` (HDM): each pixel gets the mean distance over the masks that hid it, minus the
      distance of the unperturbed output. Positive: hiding the pixel moves the output away.
    - ``'kept'`` (RISE): each pixel gets the mean distance over all masks minus the mean distance
      over the masks that kept it. Positive: keeping the pixel brings the output closer.

    Parameters
    ----------
    model : OnnxModel, str or Path
        The model, or its ``.onnx`` file (loaded with default options).
    image : ndarray, shape (H, W) or (H, W, C)
        The image in image space (values in [0, 1] for images read by `onnxplain.io.read_image`).
    method : str or Perturbation
        A perturbation, or the name of an installed one (created with its defaults).
    score : str or Score, optional
        A score, or the name of an installed one; the perturbation's default when omitted.
    target : Target, optional
        What to explain; the whole class when omitted.
    segment : ndarray, shape (H', W'), optional
        Ground-truth segment to compare with; the model's own prediction on `image` when omitted.
    seed : int
        Seed of every random choice; the same seed gives the same map.
    batch_size : int, optional
        Perturbed images per forward pass; the model's own when omitted. Memory grows with it.
    progress : callable, optional
        Called with the number of perturbed images done after each forward pass.
    keep_pixel_scores : bool
        Also keep each output's class probability at every pixel of the region (memory: one
        float32 per mask and region pixel), for per-pixel RISE maps.

    Returns
    -------
    Explanation

    Examples
    --------
    >>> from onnxplain import data
    >>> from onnxplain.hdm import HdmPerturbation
    >>> sample = data.load_sample(0)
    >>> result = explain(data.testnet_model_path(), sample.image, method=HdmPerturbation(offset=40))
    >>> result.saliency.shape, len(result.distances)
    ((240, 240), 36)
    """
    if seed < 0:
        raise OnnxplainError(f"seed must be non-negative, got {seed}")
    started = time.perf_counter()
    model = load_model(model)
    perturbation = _plugin("perturbation", method, Perturbation)
    score = _plugin("score", score or perturbation.default_score, Score)
    batch_size = batch_size or model.batch_size
    if batch_size < 1:
        raise OnnxplainError(f"batch_size must be at least 1, got {batch_size}")
    image = model.check_image(image)

    baseline_output = model.predict(image[None])
    reference = make_reference(baseline_output.mask[0], segment=segment, target=target)
    score.check(reference)
    baseline_distance = float(score.calculate_distance(baseline_output, reference)[0])

    # onnxruntime's threads own the cores here: a BLAS call in between (an aggregation, a RISE
    # mask) would wake BLAS's own threads, which then spin against onnxruntime's (measured: 30 %
    # slower inference on 2 cores).
    with threadpool_limits(limits=1, user_api="blas"):
        streamed = _stream(model, image, perturbation, score, reference, seed=seed, batch_size=batch_size,
                           progress=progress, keep_pixel_scores=keep_pixel_scores)
    mean_distance = streamed.aggregator.mean_map()
    if perturbation.weighting == "occluded":
        saliency = np.where(np.isnan(mean_distance), 0.0, mean_distance - baseline_distance)
    else:
        saliency = np.where(np.isnan(mean_distance), 0.0, streamed.distances.mean() - mean_distance)
    return Explanation(
        saliency=saliency.astype(np.float32),
        distances=streamed.distances,
        baseline_distance=baseline_distance,
        image=image,
        reference=reference,
        baseline_output=baseline_output,
        perturbation=perturbation,
        score=score,
        target=target or Target.whole_class(),
        seed=seed,
        batch_size=batch_size,
        model=model,
        seconds={"total": time.perf_counter() - started, "inference": streamed.inference_seconds},
        pixel_scores=streamed.pixel_scores,
    )


@dataclass
class _Streamed:
    distances: np.ndarray
    aggregator: _Aggregator
    pixel_scores: np.ndarray | None
    inference_seconds: float


def _stream(
    model: OnnxModel,
    image: np.ndarray,
    perturbation: Perturbation,
    score: Score,
    reference: Reference,
    *,
    seed: int,
    batch_size: int,
    progress: Progress | None,
    keep_pixel_scores: bool,
) -> _Streamed:
    """Run every mask through the model, `batch_size` at a time, scoring and aggregating as it goes."""
    shape = image.shape[:2]
    total = perturbation.count(shape)
    region = np.flatnonzero(reference.region)
    streamed = _Streamed(
        distances=np.empty(total),
        aggregator=_Aggregator(shape, perturbation.weighting),
        pixel_scores=np.empty((total, len(region)), np.float32) if keep_pixel_scores else None,
        inference_seconds=0.0,
    )
    for start in range(0, total, batch_size):
        stop = min(start + batch_size, total)
        masks = perturbation.make_masks(shape, start, stop, seed=seed)
        perturbed = _call_plugin(perturbation, "apply_mask", image, masks)
        if perturbed.shape != (stop - start, *image.shape):
            raise PluginError(
                f"{perturbation.name!r}.apply_mask returned shape {perturbed.shape}, "
                f"expected {(stop - start, *image.shape)}"
            )
        tick = time.perf_counter()
        outputs = model.predict(perturbed)
        streamed.inference_seconds += time.perf_counter() - tick
        streamed.distances[start:stop] = _call_plugin(score, "calculate_distance", outputs, reference)
        streamed.aggregator.add(masks, streamed.distances[start:stop])
        if streamed.pixel_scores is not None:
            streamed.pixel_scores[start:stop] = outputs.probability_at(region)
        if progress is not None:
            progress(stop - start)
    return streamed


def occlusion_map(explanation: Explanation, values: np.ndarray) -> np.ndarray:
    """Re-aggregate per-mask `values` with the masks of `explanation`, weighted as it was.

    Parameters
    ----------
    explanation : Explanation
        Gives the perturbation, image size, seed and batch size.
    values : ndarray, shape (n,)
        One value per mask.

    Returns
    -------
    ndarray of float32, shape (H, W)
        Each pixel the weighted mean of the values of the masks that hid it (or kept it, for
        'kept' perturbations); 0 where no mask did.
    """
    perturbation = explanation.perturbation
    shape = explanation.saliency.shape
    values = np.asarray(values, dtype=np.float64).ravel()
    if len(values) != perturbation.count(shape):
        raise OnnxplainError(f"expected one value per mask ({perturbation.count(shape)}), got {len(values)}")
    aggregator = _Aggregator(shape, perturbation.weighting)
    for start in range(0, len(values), explanation.batch_size):
        stop = min(start + explanation.batch_size, len(values))
        aggregator.add(perturbation.make_masks(shape, start, stop, seed=explanation.seed), values[start:stop])
    return np.nan_to_num(aggregator.mean_map()).astype(np.float32)


class _Aggregator:
    """Running weighted sums: each pixel's mean value over the masks that hid (or kept) it."""

    def __init__(self, shape: tuple[int, int], weighting: str):
        if weighting not in ("occluded", "kept"):
            raise PluginError(f"a perturbation's weighting is 'occluded' or 'kept', not {weighting!r}")
        self._kept = weighting == "kept"
        self._weighted = np.zeros(shape)
        self._weights = np.zeros(shape)

    def add(self, masks: np.ndarray, values: np.ndarray) -> None:
        weights = masks if self._kept else 1.0 - masks
        self._weighted += np.tensordot(values, weights, axes=1)
        self._weights += weights.sum(axis=0, dtype=np.float64)

    def mean_map(self) -> np.ndarray:
        """Weighted mean per pixel; NaN where no mask weighed the pixel."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self._weights > 0, self._weighted / self._weights, np.nan)


def _plugin(kind: str, value: object, base: type) -> object:
    if isinstance(value, str):
        value = plugins.create(kind, value)
    if not isinstance(value, base):
        raise PluginError(f"a {kind} must be a {base.__name__} or the name of one, got {type(value).__name__}")
    return value


def _call_plugin(plugin: object, method: str, *args: object) -> np.ndarray:
    """Call a plugin method, naming the plugin when it fails with anything but a user error."""
    try:
        return getattr(plugin, method)(*args)
    except OnnxplainError:
        raise
    except Exception as error:
        raise PluginError(
            f"{type(plugin).__name__}.{method} ({getattr(plugin, 'name', '?')!r}) failed: "
            f"{type(error).__name__}: {error}"
        ) from error
