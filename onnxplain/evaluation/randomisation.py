"""The model-randomisation sanity check (Adebayo et al., 2018, "Sanity Checks for Saliency Maps").

A map that stays the same when the model's weights are replaced by random ones does not explain
the model: it shows the image (edges, bright shapes), not what the network learnt. The check
re-draws the weights from the layer nearest the output down to the input, re-runs the same
explanation (same method, settings, seed, target and reference) on each randomised copy, and
compares each map with the original by Spearman rank correlation and SSIM.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from onnxplain.errors import OnnxplainError, first_line
from onnxplain.evaluation.metric import EvaluationContext, Metric, MetricResult
from onnxplain.evaluation.reinitialise import Layer, load_model_proto, reinitialise, save_model_proto, weight_layers
from onnxplain.method import Method, make_baseline
from onnxplain.segmenter import Segmenter
from onnxplain.targets import Target

_SSIM_WINDOW = 7  # scikit-image's default window: smaller maps get no SSIM


@dataclass(frozen=True)
class RandomisationStep:
    """One randomised copy of the model and how its map compares with the original map.

    Attributes
    ----------
    label : str
        ``'unchanged'`` (the model written and read back, no weight changed: a control that must
        give 1), ``'cascade K/N'`` (the K layers nearest the output of N re-drawn) or ``'full'``
        (every layer re-drawn, independently of the cascade).
    layers : int
        Layers re-drawn.
    spearman : float
        Spearman rank correlation of the two maps; NaN when undefined (see `note`).
    ssim : float
        Structural similarity of the two maps, each scaled to [0, 1]; NaN for maps under 7 pixels.
    note : str or None
        Why a value is NaN, when one is.
    """

    label: str
    layers: int
    spearman: float
    ssim: float
    note: str | None = None


@dataclass
class RandomisationResult:
    """The steps of one model-randomisation check, in the order they ran.

    ``abs_spearman_full`` is the headline: |Spearman| between the original map and the map of the
    fully randomised model. Near 1, the map does not depend on what the model learnt.
    """

    steps: list[RandomisationStep] = field(default_factory=list)

    @property
    def abs_spearman_full(self) -> float:
        """|Spearman| after full randomisation (NaN when undefined)."""
        return next((abs(s.spearman) for s in self.steps if s.label == "full"), math.nan)

    def values(self) -> dict[str, float]:
        """The figures as metric values, named ``model_randomisation_...``."""
        values = {"model_randomisation_abs_spearman": self.abs_spearman_full}
        for step in self.steps:
            values[f"model_randomisation_spearman[{step.label}]"] = step.spearman
            values[f"model_randomisation_ssim[{step.label}]"] = step.ssim
        return values

    def notes(self) -> list[str]:
        """The steps' notes, each prefixed by its step."""
        return [f"model randomisation, {s.label}: {s.note}" for s in self.steps if s.note]


def model_randomisation(
    model: Segmenter,
    image: np.ndarray,
    method: Method,
    *,
    target: Target | None = None,
    segment: np.ndarray | None = None,
    cascade_steps: int = 4,
    control: bool = True,
    seed: int = 0,
    batch_size: int | None = None,
) -> RandomisationResult:
    """Explain `image`, then explain it again on copies of `model` with random weights, and compare.

    Parameters
    ----------
    model : OnnxModel
        The model, loaded from an ONNX file (its copies are written and read with `OnnxModel.reopen`).
    image : ndarray
        The image, ``(H, W, C)`` or ``(H, W)``.
    method : Method
        The explanation method; it runs with its own seed every time.
    target : Target, optional
        What to explain; the whole class when omitted.
    segment : ndarray, optional
        Ground-truth reference; the model's prediction when omitted. The randomised models are
        compared with the same reference, so they explain the same target.
    cascade_steps : int
        Steps of the cascade from the output layer down to the input layer: step ``k`` re-draws the
        ``ceil(k * N / cascade_steps)`` layers nearest the output, of N. 0 runs only the full
        randomisation. Each step (and the control and the full randomisation) is one explanation.
    control : bool
        Also re-run on the unchanged model, written and read back: Spearman 1 shows that the method
        is deterministic, so that a low correlation comes from the weights alone.
    seed : int
        Seed of the fresh weights.
    batch_size : int, optional
        Images per forward pass.

    Returns
    -------
    RandomisationResult
    """
    baseline = make_baseline(model, image, target, segment=segment)
    saliency = method.attribute(model, baseline.image, baseline.target, baseline=baseline, batch_size=batch_size).map

    def explain_on(other: Segmenter, picture: np.ndarray) -> np.ndarray:
        return method.attribute(other, picture, baseline.target, segment=baseline.reference.mask,
                                batch_size=batch_size).map

    return randomisation_check(model, baseline.image, saliency, explain_on, cascade_steps=cascade_steps,
                               control=control, seed=seed)


def randomisation_check(
    model: Segmenter,
    image: np.ndarray,
    saliency: np.ndarray,
    explain_on: Callable[[Segmenter, np.ndarray], np.ndarray],
    *,
    cascade_steps: int = 4,
    control: bool = True,
    seed: int = 0,
) -> RandomisationResult:
    """Compare `saliency` with the maps `explain_on` gives for randomised copies of `model`.

    The parameters are those of `model_randomisation`; `explain_on(model, image)` re-runs the
    explanation. A copy whose output is NaN or infinite, or whose map is constant, gets NaN
    values and a note instead of stopping the check.
    """
    if cascade_steps < 0:
        raise OnnxplainError(f"cascade_steps must be non-negative, got {cascade_steps}", parameters=("cascade_steps",))
    path, reopen = getattr(model, "path", None), getattr(model, "reopen", None)
    if path is None or reopen is None:
        raise OnnxplainError("the model-randomisation check re-draws the weights of an ONNX file, so it needs a "
                             f"model loaded from one (an OnnxModel), not a {type(model).__name__}")
    saliency = np.asarray(saliency, dtype=np.float64)
    proto = load_model_proto(path)
    layers = weight_layers(proto)
    if not layers:
        raise OnnxplainError(f"{path} has no Conv, ConvTranspose, Gemm or MatMul weights stored in the graph "
                             "(as initializers or Constant nodes), so the model-randomisation check has nothing "
                             "to re-draw")
    # (label, layers re-drawn nearest the output first, seed stream): the cascade numbers its draws by
    # layer from the top, so each step keeps the weights of the one before; the full randomisation
    # draws independently of it.
    top_down = layers[::-1]
    plan: list[tuple[str, list[Layer], int]] = [("unchanged", [], 0)] if control else []
    for count in sorted({math.ceil(k * len(layers) / cascade_steps) for k in range(1, cascade_steps + 1)}):
        plan.append((f"cascade {count}/{len(layers)}", top_down[:count], 0))
    plan.append(("full", top_down, 1))
    result = RandomisationResult()
    if np.ptp(saliency) == 0:
        # A constant map ranks no pixel: its correlation with any map is undefined.
        note = "the original map is constant, so it ranks no pixel and no correlation is defined"
        result.steps = [RandomisationStep(label, len(chosen), math.nan, math.nan, note) for label, chosen, _ in plan]
        return result
    with tempfile.TemporaryDirectory(prefix="onnxplain-randomised-") as folder:
        for index, (label, chosen, stream) in enumerate(plan):
            copy = save_model_proto(reinitialise(proto, chosen, seed=[seed, stream]), Path(folder) / f"{index}.onnx")
            result.steps.append(_step(label, len(chosen), saliency, explain_on, reopen(copy), image))
    return result


def _step(label: str, count: int, saliency: np.ndarray, explain_on: Callable[[Segmenter, np.ndarray], np.ndarray],
          model: Segmenter, image: np.ndarray) -> RandomisationStep:
    """Explain `image` on one randomised `model` and compare, turning a degenerate model into a note."""
    try:
        other = np.asarray(explain_on(model, image), dtype=np.float64)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as error:
        # OnnxplainError is a ValueError: a model whose output is NaN or infinite ends here.
        return RandomisationStep(label, count, math.nan, math.nan,
                                 f"the randomised model could not be explained ({first_line(error)})")
    if other.shape != saliency.shape or not np.isfinite(other).all():
        return RandomisationStep(label, count, math.nan, math.nan, "the randomised model's map is not finite")
    ssim = _ssim(saliency, other)
    if np.ptp(other) == 0:
        return RandomisationStep(label, count, math.nan, ssim,
                                 "the randomised model's map is constant (its output ignores the method's "
                                 "perturbations): the map changed entirely, but no rank correlation is defined")
    return RandomisationStep(label, count, float(spearmanr(saliency.ravel(), other.ravel()).statistic), ssim)


def _ssim(first: np.ndarray, second: np.ndarray) -> float:
    if min(first.shape) < _SSIM_WINDOW:
        return math.nan
    return float(structural_similarity(_unit(first), _unit(second), data_range=1.0))


def _unit(saliency: np.ndarray) -> np.ndarray:
    """`saliency` scaled to [0, 1] (all zeros for a constant map)."""
    low, span = saliency.min(), np.ptp(saliency)
    return (saliency - low) / span if span > 0 else np.zeros_like(saliency)


class ModelRandomisation(Metric):
    """The model-randomisation sanity check as a metric (`model_randomisation` for the details).

    ``model_randomisation_abs_spearman`` is |Spearman| between the map and the map of the fully
    randomised model: lower is better, and a value near 1 says that the map does not explain the
    model. ``model_randomisation_spearman[STEP]`` and ``model_randomisation_ssim[STEP]`` give every
    step: ``unchanged`` (must be 1), ``cascade K/N`` and ``full``. Needs the context's model to be
    an `OnnxModel` and its ``explain_on``; costs ``cascade_steps + 2`` explanations per map.

    Parameters
    ----------
    cascade_steps : int
        Steps of the cascade from the output layer down (0: full randomisation only).
    control : bool
        Also re-run on the unchanged model.
    """

    name = "model-randomisation"
    higher_is_better = False
    reruns_explanation = True

    def __init__(self, *, cascade_steps: int = 4, control: bool = True):
        if cascade_steps < 0:
            raise OnnxplainError(f"cascade_steps must be non-negative, got {cascade_steps}",
                                 parameters=("cascade_steps",))
        self.cascade_steps = cascade_steps
        self.control = control

    def _evaluate(self, context: EvaluationContext, saliency: np.ndarray) -> MetricResult:
        if context.explain_on is None:
            raise OnnxplainError("model-randomisation re-runs the explanation on randomised copies of the model, so "
                                 "it needs the explainer in the context; it cannot score saved maps")
        result = randomisation_check(context.model, context.image, saliency, context.explain_on,
                                     cascade_steps=self.cascade_steps, control=self.control, seed=context.seed)
        return MetricResult(values=result.values(), notes=result.notes())
