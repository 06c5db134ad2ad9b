"""Faithfulness metrics: deletion and insertion curves (Petsiuk et al., 2018), infidelity and
max-sensitivity (Yeh et al., 2019)."""

from __future__ import annotations

import numpy as np
from scipy.integrate import trapezoid

from onnxplain.batching import batches
from onnxplain.errors import OnnxplainError
from onnxplain.evaluation.metric import EvaluationContext, Metric, MetricResult, check_curve_score
from onnxplain.perturbation.fill import FILLS, fill_image


class _PixelOrderCurve(Metric):
    """Pixels removed (deletion) or revealed (insertion) in order of saliency, in `steps` steps.

    The curve is the similarity of the output to the reference after each step, against the
    fraction of pixels changed; its area (AUC, trapezoidal over [0, 1]) is the metric. The same
    curve for a random pixel order, from the context's seed, is the baseline. Ties in saliency are
    broken at random, so a flat map is no better than a random order.

    Parameters
    ----------
    steps : int
        Number of steps; the curve has ``steps + 1`` points, each one forward pass.
    substrate : {'black', 'mean', 'blur'} or float
        What removed pixels become, as for a perturbation's fill.
    blur_sigma : float
        Blur of the 'blur' substrate, in pixels.
    score : {'class-score', 'dice'}
        The curve's similarity: mean class probability over the target region, or Dice with the
        reference.
    """

    reveal: bool = False

    def __init__(self, *, steps: int = 50, substrate: str | float = "black", blur_sigma: float = 10.0,
                 score: str = "class-score"):
        if steps < 1:
            raise OnnxplainError(f"steps must be at least 1, got {steps}")
        if isinstance(substrate, str) and substrate not in FILLS:
            raise OnnxplainError(f"substrate must be one of {', '.join(FILLS)} or a number, got {substrate!r}")
        self.steps = steps
        self.substrate = substrate
        self.blur_sigma = blur_sigma
        self.score = check_curve_score(score)

    def _evaluate(self, context: EvaluationContext, saliency: np.ndarray) -> MetricResult:
        rng = np.random.default_rng([context.seed, 1])
        pixels = saliency.size
        # Most salient first; a random key under the saliency breaks ties without favouring a corner.
        by_saliency = np.lexsort((rng.random(pixels), -saliency.ravel()))
        random_order = rng.permutation(pixels)
        fractions = np.linspace(0.0, 1.0, self.steps + 1)
        curve = self._curve(context, by_saliency, fractions)
        baseline = self._curve(context, random_order, fractions)
        return MetricResult(
            values={
                f"{self.name}_auc": float(trapezoid(curve, fractions)),
                f"{self.name}_random_auc": float(trapezoid(baseline, fractions)),
            },
            curves={"saliency order": (fractions, curve), "random order": (fractions, baseline)},
        )

    def _curve(self, context: EvaluationContext, order: np.ndarray, fractions: np.ndarray) -> np.ndarray:
        image = context.image
        substrate = np.broadcast_to(fill_image(image, self.substrate, blur_sigma=self.blur_sigma), image.shape)
        flat_rank = np.empty(order.size, np.intp)
        flat_rank[order] = np.arange(order.size)
        rank = flat_rank.reshape(image.shape[:2])
        counts = np.round(fractions * order.size).astype(np.intp)
        values = []
        for start, stop in batches(len(counts), context.batch_size):
            changed = (rank[None] < counts[start:stop, None, None])[..., None]
            first, second = (substrate, image) if self.reveal else (image, substrate)
            values.append(context.similarity(np.where(changed, second, first).astype(np.float32), self.score))
        return np.concatenate(values)


class Deletion(_PixelOrderCurve):
    """Deletion: remove the most salient pixels first; a faithful map makes the score fall fast.

    Lower AUC is better; compare it with the random order's, ``deletion_random_auc``.
    """

    name = "deletion"
    higher_is_better = False
    reveal = False


class Insertion(_PixelOrderCurve):
    """Insertion: reveal the most salient pixels first on the substrate; the score should rise fast.

    Higher AUC is better; compare it with the random order's, ``insertion_random_auc``.
    """

    name = "insertion"
    higher_is_better = True
    reveal = True


class Infidelity(Metric):
    """Infidelity (Yeh et al., 2019): how badly the map, as a linear model, predicts score changes.

    For random perturbations ``I`` (Gaussian noise of `noise_std`), it compares the map's prediction
    ``I · saliency`` with the real change ``f(x) - f(x - I)`` of the class score:
    ``mean((beta * I · saliency - (f(x) - f(x - I)))^2)``, where ``beta`` is the least-squares scale,
    so maps of any unit compare fairly (Captum's ``normalize=True``). Lower is better.

    Parameters
    ----------
    n_samples : int
        Random perturbations, one forward pass each.
    noise_std : float
        Standard deviation of the noise, in image units ([0, 1]).
    """

    name = "infidelity"
    higher_is_better = False

    def __init__(self, *, n_samples: int = 32, noise_std: float = 0.1):
        if n_samples < 2 or noise_std <= 0:
            raise OnnxplainError(f"infidelity needs n_samples >= 2 and noise_std > 0, got {n_samples}, {noise_std}")
        self.n_samples = n_samples
        self.noise_std = noise_std

    def _evaluate(self, context: EvaluationContext, saliency: np.ndarray) -> MetricResult:
        rng = np.random.default_rng([context.seed, 2])
        image = context.image
        original = context.similarity(image[None])[0]
        predicted_parts, actual_parts = [], []
        for start, stop in batches(self.n_samples, context.batch_size):
            noise = rng.normal(0.0, self.noise_std, (stop - start, *image.shape)).astype(np.float32)
            actual_parts.append(original - context.similarity(image - noise))
            predicted_parts.append(np.einsum("nhwc,hw->n", noise, saliency))
        predicted, actual = np.concatenate(predicted_parts), np.concatenate(actual_parts)
        energy = float(predicted @ predicted)
        beta = float(predicted @ actual) / energy if energy > 0 else 0.0
        return MetricResult(values={"infidelity": float(np.mean((beta * predicted - actual) ** 2))})


class MaxSensitivity(Metric):
    """Max-sensitivity (Yeh et al., 2019): how much the map changes when the image barely does.

    The explanation runs again on `n_samples` images with uniform noise of at most `radius` per
    pixel; the metric is the largest ``|map(noisy) - map| / |map|`` (Euclidean norms; divided by
    1 instead for an all-zero map). Lower is better. It measures the method's stability, not the
    map alone, and costs `n_samples` whole explanations.

    Parameters
    ----------
    n_samples : int
        Noisy images.
    radius : float
        Largest change of any pixel, in image units ([0, 1]).
    """

    name = "max-sensitivity"
    higher_is_better = False

    def __init__(self, *, n_samples: int = 5, radius: float = 0.02):
        if n_samples < 1 or radius <= 0:
            raise OnnxplainError(f"max-sensitivity needs n_samples >= 1 and radius > 0, got {n_samples}, {radius}")
        self.n_samples = n_samples
        self.radius = radius

    def _evaluate(self, context: EvaluationContext, saliency: np.ndarray) -> MetricResult:
        if context.explain is None:
            raise OnnxplainError("max-sensitivity re-runs the explanation, so it needs the explainer in the context")
        rng = np.random.default_rng([context.seed, 3])
        scale = float(np.linalg.norm(saliency)) or 1.0
        worst = 0.0
        for _ in range(self.n_samples):
            noise = rng.uniform(-self.radius, self.radius, context.image.shape).astype(np.float32)
            other = np.asarray(context.explain(context.image + noise), dtype=np.float64)
            worst = max(worst, float(np.linalg.norm(other - saliency)) / scale)
        return MetricResult(values={"max_sensitivity": worst})
