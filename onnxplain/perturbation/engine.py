"""The perturbation engine: a method composed of a mask source, a fill, a score and an aggregator.

Masks stream through the model in batches: each batch is made, applied, run, scored and handed
to the aggregator, then dropped, so memory stays flat in the number of masks.
"""

from __future__ import annotations

import copy
import functools
import math
from abc import abstractmethod
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
from threadpoolctl import ThreadpoolController

from onnxplain.attribution import Attribution
from onnxplain.batching import batches, check_batch_memory, out_of_memory
from onnxplain.errors import OnnxplainError, PluginError
from onnxplain.method import Baseline, Method, Progress
from onnxplain.outputs import ModelOutput
from onnxplain.perturbation.aggregate import Aggregator
from onnxplain.perturbation.convergence import CHECK_EVERY, SplitReliability, checkpoint_batches
from onnxplain.perturbation.fill import Fill, blend, check_fill, fill_image
from onnxplain.perturbation.masks import MaskBatch, MaskSource
from onnxplain.perturbation.refine import CoarseToFine, SubsetMasks, block_shape
from onnxplain.registry import plugins
from onnxplain.scores import Score
from onnxplain.segmenter import Segmenter


class Collector:
    """Optional per-batch observer of a method: sees every batch's outputs and adds arrays of its own."""

    def add(self, outputs: ModelOutput, start: int, stop: int) -> None:
        """Take the outputs of masks `start` to `stop`."""

    def arrays(self, source: MaskSource) -> dict[str, np.ndarray]:
        """Arrays to save with the attribution."""
        return {}


class PerturbationMethod(Method):
    """A perturbation method: masks from `mask_source`, a fill, a score and an aggregator.

    A subclass sets `name`, `default_score` and `default_aggregator`, takes its own parameters
    (passing ``**options`` on) and implements `mask_source`; see ``onnxplain/perturbation/occlusion.py``
    for a whole method in a few lines.

    Parameters
    ----------
    fill : {'black', 'mean', 'blur'}, float or sequence of float
        What hidden pixels become (see `onnxplain.perturbation.fill.fill_image`).
    blur_sigma : float
        Standard deviation of the blur fill, in pixels.
    channel : int, optional
        Perturb this image channel only; all channels when omitted.
    score : str or Score, optional
        How far each perturbed output is from the reference; the method's default when omitted.
    aggregator : str or Aggregator, optional
        How distances become a map; the method's default when omitted.
    seed : int
        Seed of every random choice of the mask source.
    """

    default_score: ClassVar[str] = "class-score"
    default_aggregator: ClassVar[str] = "occluded-mean"
    converge: float | None = None  # sampling methods stop once their map reaches this (see `convergence`)
    converge_to: str = "budget"  # ... correlation with the map of the whole budget, or of the limit
    refine: float | None = None  # grid methods refine coarse-to-fine with this tolerance (see `refine`)
    refine_step: int = 4  # ... starting from every refine_step-th position

    def __init__(
        self,
        *,
        fill: Fill = "black",
        blur_sigma: float = 10.0,
        channel: int | None = None,
        score: str | Score | None = None,
        aggregator: str | Aggregator | None = None,
        seed: int = 0,
    ):
        if blur_sigma <= 0:
            raise OnnxplainError(f"blur_sigma must be positive, got {blur_sigma}", parameters=("blur_sigma",))
        if channel is not None and channel < 0:
            raise OnnxplainError(f"channel must be non-negative, got {channel}", parameters=("channel",))
        if seed < 0:
            raise OnnxplainError(f"seed must be non-negative, got {seed}", parameters=("seed",))
        self.fill = check_fill(fill)
        self.blur_sigma = blur_sigma
        self.channel = channel
        self.seed = seed
        # Named plugins are looked up now, so an unknown name fails before any work.
        self.score = _plugin("score", score or self.default_score, Score)
        self.aggregator = _plugin("aggregator", aggregator or self.default_aggregator, Aggregator)
        self._source_cache: tuple[np.ndarray, MaskSource] | None = None  # (a copy of the image, its masks)

    @abstractmethod
    def mask_source(self, image: np.ndarray) -> MaskSource:
        """The masks for `image` (*spatial, C)."""

    def apply(self, image: np.ndarray, masks: np.ndarray, fill: np.ndarray | float) -> np.ndarray:
        """Perturbed images (n, *spatial, C) for `masks`; override to perturb otherwise."""
        return blend(image, masks, fill, channel=self.channel)

    def collector(self, baseline: Baseline, total: int) -> Collector | None:
        """An observer of every batch's outputs, for methods that keep more than the map."""
        return None

    def source_for(self, image: np.ndarray) -> MaskSource:
        """`mask_source(image)`, checked, and made once per image (superpixels are not computed twice).

        The cache compares the pixels, not the array object, so an image changed in place gets new masks.
        """
        cached = self._source_cache
        if cached is not None and cached[0].shape == image.shape and np.array_equal(cached[0], image):
            return cached[1]
        source = _call_plugin(self, "mask_source", image)
        if len(source) == 0:
            raise OnnxplainError(
                f"method {self.name!r} finds no features to perturb in an image shaped {image.shape[:-1]}; "
                "give smaller windows or more segments",
                parameters=("method",),
            )
        self.aggregator.check(source)
        self._source_cache = (image.copy(), source)
        return source

    def count(self, image: np.ndarray) -> int:
        """Images the method runs for `image`; makes and checks its masks' source, so that a run of several
        methods can fail before any of them starts. Refined coarse-to-fine, the most it can run: every
        position and every block's probe."""
        source = self.source_for(image)
        if self.refine is None or source.grid is None:
            return len(source)
        return len(source) + math.prod(block_shape(source.grid, self.refine_step))

    def _attribute(
        self, model: Segmenter, baseline: Baseline, *, batch_size: int, progress: Progress | None
    ) -> Attribution:
        image, reference = baseline.image, baseline.reference
        source = self.source_for(image)
        score = self.score
        _call_plugin(score, "check", reference)
        baseline_value = float(_call_plugin(score, "calculate_distance", baseline.output, reference)[0])
        aggregator = copy.copy(self.aggregator)  # a fresh aggregation; the configured one stays untouched
        _call_plugin(aggregator, "begin", source, baseline_value)
        collector = self.collector(baseline, len(source))
        fill = fill_image(image, self.fill, blur_sigma=self.blur_sigma)
        inference_before = getattr(model, "inference_seconds", 0.0)
        # Per perturbed image: its mask, the perturbed copy and the model's tensor, and the output.
        pixels = math.prod(source.spatial)
        check_batch_memory(min(batch_size, len(source)), per_item=3 * image.nbytes + 12 * pixels,
                           fixed=16 * pixels + 2 * image.nbytes)
        _check_perturbed(self, model, baseline, source, fill)
        evaluation = _Evaluation(self, model, baseline, fill, aggregator, collector, progress)
        try:
            # onnxruntime's threads own the cores here: a BLAS call in between (an aggregation, a mask)
            # would wake BLAS's own threads, which then spin against onnxruntime's (measured: 30 % slower
            # inference on 2 cores).
            with _threadpools().limit(limits=1, user_api="blas"):
                run: dict | None
                if self.refine is not None:
                    values, source, run = _coarse_to_fine(self, evaluation, source, batch_size, baseline_value,
                                                          tolerance=self.refine)
                else:
                    values, run = _sample(self, evaluation, source, batch_size, baseline_value)
                saliency = _call_plugin(aggregator, "finish")
        except MemoryError:
            raise out_of_memory(batch_size) from None
        arrays = {**source.arrays(), **aggregator.arrays(), **(collector.arrays(source) if collector else {})}
        return Attribution(
            map=np.asarray(saliency, dtype=np.float32),
            image=image,
            segment=reference.mask,
            region=reference.roi,
            values=values,
            baseline_value=baseline_value,
            arrays=arrays,
            record={
                "score": {"name": score.name, "parameters": score.parameters()},
                "aggregator": {"name": aggregator.name, "parameters": aggregator.parameters()},
                "seed": self.seed,
                "seconds": {"inference": round(getattr(model, "inference_seconds", 0.0) - inference_before, 3)},
                **({"convergence": run} if run is not None else {}),
            },
        )


class _Evaluation:
    """One explanation's perturb-run-score-aggregate step, for any batch of masks."""

    def __init__(self, method: PerturbationMethod, model: Segmenter, baseline: Baseline, fill: np.ndarray | float,
                 aggregator: Aggregator, collector: Collector | None, progress: Progress | None):
        self.method, self.model, self.baseline, self.fill = method, model, baseline, fill
        self.aggregator, self.collector, self.progress = aggregator, collector, progress

    def run(self, batch: MaskBatch) -> np.ndarray:
        """The values of `batch`'s masks (its `start` counts the masks evaluated before it), aggregated."""
        outputs, values = self._values(batch.masks)
        _call_plugin(self.aggregator, "add", batch, values)
        if self.collector is not None:
            self.collector.add(outputs, batch.start, batch.start + len(batch.masks))
        return values

    def probe(self, masks: np.ndarray) -> np.ndarray:
        """The values of `masks`, which steer the run but are not part of the map."""
        return self._values(masks)[1]

    def _values(self, masks: np.ndarray) -> tuple[ModelOutput, np.ndarray]:
        method, image, target = self.method, self.baseline.image, self.baseline.target
        count = len(masks)
        perturbed = _call_plugin(method, "apply", image, masks, self.fill)
        if perturbed.shape != (count, *image.shape):
            raise PluginError(f"{method.name!r}.apply returned shape {perturbed.shape}, "
                              f"expected {(count, *image.shape)}")
        outputs = self.model.predict(perturbed, class_index=target.class_index, output=target.output)
        values = np.asarray(_call_plugin(method.score, "calculate_distance", outputs, self.baseline.reference),
                            dtype=np.float64)
        if self.progress is not None:
            self.progress(count)
        return outputs, values


METHOD_CHECK_IMAGES = 64  # perturbed images a self-checking model compares before a run


def _check_perturbed(method: PerturbationMethod, model: Segmenter, baseline: Baseline, source: MaskSource,
                     fill: np.ndarray | float) -> None:
    """Let a model that checks itself (a reduced-precision `OnnxModel`) compare its values on some of the
    method's own perturbed images, spread evenly over its masks, before the run."""
    check = getattr(model, "check_perturbed", None)
    if check is None:
        return

    def perturb() -> np.ndarray:  # made only by a model that checks (not at fp32)
        count = min(METHOD_CHECK_IMAGES, len(source))
        chosen = np.unique(np.linspace(0, len(source) - 1, count).round().astype(np.intp))
        masks = SubsetMasks(source, chosen).batch(0, len(chosen)).masks
        return _call_plugin(method, "apply", baseline.image, masks, fill)

    reference = baseline.reference
    check(perturb, lambda outputs: _call_plugin(method.score, "calculate_distance", outputs, reference),
          method=method.name, class_index=baseline.target.class_index, output=baseline.target.output)


def _sample(method: PerturbationMethod, evaluation: _Evaluation, source: MaskSource, batch_size: int,
            baseline_value: float) -> tuple[np.ndarray, dict | None]:
    """All masks in order, or, with `method.converge`, until the parts' agreement says the map has converged."""
    values = np.empty(len(source))
    tracker = (None if method.converge is None else SplitReliability(method.aggregator, source, baseline_value,
                                                                     method.converge, against=method.converge_to))
    every = CHECK_EVERY if tracker is not None else None
    for start, stop in checkpoint_batches(len(source), batch_size, every):
        batch = _call_plugin(source, "batch", start, stop)
        values[start:stop] = evaluation.run(batch)
        if tracker is not None:
            tracker.add(batch, values[start:stop])
            if tracker.converged(stop):
                return values[:stop], tracker.record(stop)
    return values, None if tracker is None else tracker.record(len(source))


def _coarse_to_fine(method: PerturbationMethod, evaluation: _Evaluation, source: MaskSource, batch_size: int,
                    baseline_value: float, *, tolerance: float) -> tuple[np.ndarray, MaskSource, dict]:
    """The grid's masks level by level (`onnxplain.perturbation.refine`): values, masks evaluated, record."""
    if source.grid is None:
        raise OnnxplainError(f"method {method.name!r} has no grid of positions to refine; refine is for hdm and "
                             "occlusion", parameters=("refine",))
    plan = CoarseToFine(source.grid, tolerance=tolerance, step=method.refine_step)
    blocks = plan.blocks()
    probes = []
    for start, stop in batches(len(blocks), batch_size):
        # A block's probe hides what all its masks hide (each keeps a pixel by 1, hides it by 0).
        unions = np.stack([SubsetMasks(source, block).batch(0, len(block)).masks.min(axis=0)
                           for block in blocks[start:stop]])
        probes.append(evaluation.probe(unions))
    plan.probed(np.concatenate(probes) - baseline_value)
    order: list[np.ndarray] = []
    values: list[np.ndarray] = []
    done = 0
    indices = plan.first()
    while len(indices):
        level = SubsetMasks(source, indices)
        # Batches never cross a level, whose positions depend on the level before: any batch size, same positions.
        level_values = np.concatenate([evaluation.run(replace(level.batch(start, stop), start=done + start))
                                       for start, stop in batches(len(level), batch_size)])
        order.append(indices)
        values.append(level_values)
        done += len(indices)
        indices = plan.next(indices, level_values - baseline_value)
    return np.concatenate(values), SubsetMasks(source, np.concatenate(order)), plan.record()


@functools.cache
def _threadpools() -> ThreadpoolController:
    """The process's thread pools, found once (finding them costs about a millisecond)."""
    return ThreadpoolController()


def reaggregate(source: MaskSource, aggregator: Aggregator, values: np.ndarray, *, baseline_value: float = 0.0,
                batch_size: int = 64) -> np.ndarray:
    """Aggregate other per-mask `values` over the masks of `source` (the 2019 API's better/worse-only maps)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if len(values) != len(source):
        raise OnnxplainError(f"expected one value per mask ({len(source)}), got {len(values)}")
    aggregator = copy.copy(aggregator)
    aggregator.begin(source, baseline_value)
    for start, stop in batches(len(values), batch_size):
        aggregator.add(source.batch(start, stop), values[start:stop])
    return aggregator.finish()


def _plugin(kind: str, value: object, base: type) -> Any:
    if isinstance(value, str):
        value = plugins.create(kind, value)
    if not isinstance(value, base):
        raise PluginError(f"a {kind} must be a {base.__name__} or the name of one, got {type(value).__name__}")
    return value


def _call_plugin(plugin: object, method: str, *args: object) -> Any:
    """Call a plugin method, naming the plugin when it fails with anything but a user error."""
    try:
        return getattr(plugin, method)(*args)
    except (OnnxplainError, MemoryError):  # a user error, or too large a batch: not the plugin's fault
        raise
    except Exception as error:
        raise PluginError(
            f"{type(plugin).__name__}.{method} ({getattr(plugin, 'name', '?')!r}) failed: "
            f"{type(error).__name__}: {error}"
        ) from error
