"""The metric interface: a number (and maybe a curve) saying how faithful a saliency map is."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from onnxplain.attribution import Attribution
from onnxplain.batching import batches
from onnxplain.errors import OnnxplainError
from onnxplain.registry import plugin_parameters
from onnxplain.scores import ClassScore, DiceScore
from onnxplain.segmenter import Segmenter
from onnxplain.targets import Reference, Target

CURVE_SCORES = ("class-score", "dice")


@dataclass(frozen=True)
class EvaluationContext:
    """Everything a metric may use besides the map.

    Attributes
    ----------
    model : Segmenter
        The model that was explained.
    image : ndarray of float32, shape (H, W, C)
        The explained image.
    reference : Reference
        The explanation's reference and region of interest.
    target : Target
        What was explained, with its class and output.
    explain : callable, optional
        ``explain(image) -> saliency``: the same explanation method and settings on another image
        (metrics that test stability need it).
    explain_on : callable, optional
        ``explain_on(model, image) -> saliency``: the same method, settings, seed, target and
        reference on another model (the model-randomisation check needs it).
    masks : mapping of str to ndarray of bool
        Named regions where relevance is expected (testnet: ``'decider'``, ``'target'``...).
    seed : int
        Seed of every random choice a metric makes.
    batch_size : int
        Images per forward pass.
    """

    model: Segmenter
    image: np.ndarray
    reference: Reference
    target: Target = field(default_factory=Target.whole_class)
    explain: Callable[[np.ndarray], np.ndarray] | None = None
    explain_on: Callable[[Segmenter, np.ndarray], np.ndarray] | None = None
    masks: Mapping[str, np.ndarray] = field(default_factory=dict)
    seed: int = 0
    batch_size: int = 16

    @classmethod
    def from_attribution(
        cls,
        attribution: Attribution,
        model: Segmenter,
        *,
        target: Target | None = None,
        explain: Callable[[np.ndarray], np.ndarray] | None = None,
        explain_on: Callable[[Segmenter, np.ndarray], np.ndarray] | None = None,
        masks: Mapping[str, np.ndarray] | None = None,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> EvaluationContext:
        """The context of an attribution that `model` was explained by."""
        return cls(
            model=model,
            image=attribution.image,
            reference=Reference(mask=attribution.segment, roi=attribution.region),
            target=target or Target.whole_class(),
            explain=explain,
            explain_on=explain_on,
            masks=dict(masks or {}),
            seed=seed,
            batch_size=batch_size or model.batch_size,
        )

    def similarity(self, images: np.ndarray, score: str = "class-score") -> np.ndarray:
        """How close the model's output on each image is to the reference, in [0, 1].

        ``'class-score'``: the mean class probability over the region of interest (the reference
        pixels for a whole-class target); ``'dice'``: the Dice coefficient with the reference.
        """
        scorer = {"class-score": ClassScore, "dice": DiceScore}[score]()
        values = []
        for start, stop in batches(len(images), self.batch_size):
            outputs = self.model.predict(images[start:stop], class_index=self.target.class_index,
                                         output=self.target.output)
            values.append(1.0 - scorer.calculate_distance(outputs, self.reference))
        return np.concatenate(values)


@dataclass
class MetricResult:
    """What a metric found for one map.

    Attributes
    ----------
    values : dict of str to float
        Named numbers, each name unique across metrics, such as
        ``{'deletion_auc': 0.12, 'deletion_random_auc': 0.45}``.
    curves : dict of str to (x, y)
        Named curves, for plots.
    notes : list of str
        What the user should know about the values, such as why one is NaN.
    """

    values: dict[str, float]
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Metric(ABC):
    """A faithfulness metric: an ``onnxplain.metrics`` plugin.

    Contract: `evaluate` checks the map once (shape (H, W) of the image, finite values) and
    returns a `MetricResult`; it runs the model only through the context, with the context's seed
    for any random choice, and changes none of its inputs. `higher_is_better` says which way its
    values point for a more faithful map; `reruns_explanation` says that it needs the context's
    explainer, so it cannot score maps saved earlier. Subclasses implement `_evaluate` and keep each
    constructor argument as an attribute of the same name.
    """

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    reruns_explanation: ClassVar[bool] = False

    def evaluate(self, context: EvaluationContext, saliency: np.ndarray) -> MetricResult:
        """Measure `saliency` (H, W) for the image and model of `context`."""
        saliency = np.asarray(saliency, dtype=np.float64)
        if saliency.shape != context.image.shape[:2]:
            raise OnnxplainError(
                f"the saliency map is shaped {saliency.shape} but the image is {context.image.shape[:2]} "
                "(height, width); give a map of the image's size"
            )
        if not np.isfinite(saliency).all():
            raise OnnxplainError("the saliency map contains NaN or infinite values")
        return self._evaluate(context, saliency)

    @abstractmethod
    def _evaluate(self, context: EvaluationContext, saliency: np.ndarray) -> MetricResult:
        """The metric's work, on a checked float64 map."""

    def parameters(self) -> dict[str, Any]:
        """The constructor arguments, as recorded with each evaluation."""
        return plugin_parameters(self)


def check_curve_score(score: str) -> str:
    """Return `score` if a curve can use it (``'class-score'`` or ``'dice'``), else say which can."""
    if score not in CURVE_SCORES:
        raise OnnxplainError(f"the curve score must be one of {', '.join(CURVE_SCORES)}, got {score!r}")
    return score
