"""Faithfulness metrics: deletion and insertion curves (Petsiuk et al., 2018), infidelity and
max-sensitivity (Yeh et al., 2019). The symmetric relevance gain is in `onnxplain.evaluation.srg`."""

from __future__ import annotations

import numpy as np
from scipy.integrate import trapezoid

from onnxplain.batching import batches
from onnxplain.errors import OnnxplainError
from onnxplain.evaluation.metric import EvaluationContext, Metric, MetricResult
from onnxplain.evaluation.pixel_flipping import FlipMetric, most_relevant_first
from onnxplain.evaluation.substrate import Substrate

PERTURBATIONS = ("squares", "gaussian")


class _PixelOrderCurve(FlipMetric):
    """Pixels removed (deletion) or revealed (insertion) in order of saliency, in `steps` steps.

    The curve is the similarity of the output to the reference after each step, against the
    fraction of pixels changed; its area (AUC, trapezoidal over [0, 1]) is the metric. The same
    curve for `n_random` random maps, from the context's seed, is the baseline:
    ``NAME_random_auc`` is their mean AUC and ``NAME_random_auc_std`` its spread. Ties in saliency
    are broken at random, so a flat map is no better than a random order. The parameters are those
    of `FlipMetric`.
    """

    reveal: bool = False

    def _evaluate(self, context: EvaluationContext, saliency: np.ndarray) -> MetricResult:
        fractions = self.fractions()
        order = most_relevant_first(saliency, np.random.default_rng([context.seed, 1]))
        curve = self.curve(context, order, fractions, reveal=self.reveal)
        baselines = self.baseline(context, lambda: np.stack([
            self.curve(context, random_order, fractions, reveal=self.reveal, stream=1 + draw)
            for draw, random_order in enumerate(self.random_orders(context))
        ]))
        random_aucs = trapezoid(baselines, fractions, axis=1)
        return MetricResult(
            values={
                f"{self.name}_auc": float(trapezoid(curve, fractions)),
                f"{self.name}_random_auc": float(random_aucs.mean()),
                f"{self.name}_random_auc_std": float(random_aucs.std()),
            },
            curves={"saliency order": (fractions, curve),
                    f"random maps (mean of {self.n_random})": (fractions, baselines.mean(axis=0))},
        )


class Deletion(_PixelOrderCurve):
    """Deletion: remove the most salient pixels first; a faithful map makes the score fall fast.

    Lower AUC is better; compare it with the random maps' mean, ``deletion_random_auc``. The
    score alone falls under any order once enough of the image is gone: `SymmetricRelevanceGain`
    (``srg``) compares this order with its reverse, which a substrate affects far less.
    """

    name = "deletion"
    higher_is_better = False
    reveal = False


class Insertion(_PixelOrderCurve):
    """Insertion: reveal the most salient pixels first on the substrate; the score should rise fast.

    Higher AUC is better; compare it with the random maps' mean, ``insertion_random_auc``.
    """

    name = "insertion"
    higher_is_better = True
    reveal = True


class Infidelity(Metric):
    """Infidelity (Yeh et al., 2019): how badly the map, as a linear model, predicts score changes.

    For random perturbations ``I`` it compares the map's prediction ``I · saliency`` with the real
    change ``f(x) - f(x - I)`` of the class score: ``mean((beta * I · saliency - (f(x) - f(x - I)))^2)``,
    where ``beta`` is the least-squares scale, so maps of any unit compare fairly (Captum's
    ``normalize=True``). Lower is better. ``infidelity_score_change``, the mean ``|f(x) - f(x - I)|``,
    says whether the perturbations move the model at all: near 0, the metric has nothing to explain.

    Perturbations (`perturbation`):

    - ``'squares'`` (default), Yeh et al.'s square removal on a grid: the image is cut into squares
      of `square_size` times its longer side (the grid shifted at random), and each square is
      replaced by the substrate (a strong blur by default) with probability `square_probability`,
      at least one per perturbation; ``I = x - substrate`` there and 0 elsewhere. The perturbed
      image stays one the model can read, and with about a tenth of the image removed each time,
      some perturbations cover what the model looks at (on bundled testnet samples 0 to 3 the
      score moves by 0.10 to 0.22 on average, where a single square of the same size seldom
      meets the two small shapes that decide).
    - ``'gaussian'``: noise of standard deviation `noise_std` times the image's value range on
      every pixel. Real networks leave their training data under pixel noise: on the bundled
      testnet model, noise of 0.1 (this metric's former default) drops the class score from
      0.999 to 0.001 on every draw, so the change is the same whatever the noise and no map can
      explain it, while noise of 0.01 moves it by less than 0.001.

    Parameters
    ----------
    n_samples : int
        Random perturbations, one forward pass each.
    perturbation : {'squares', 'gaussian'}
        The kind of perturbation.
    square_size : float
        Side of the squares, as a fraction of the image's longer side.
    square_probability : float
        Chance that each square is removed in one perturbation.
    substrate : {'blur', 'black', 'mean', 'road'} or float
        What removed squares become (see `Substrate`).
    blur_fraction : float
        Standard deviation of the blur substrate, as a fraction of the image's longer side.
    noise_std : float
        Standard deviation of the Gaussian noise, as a fraction of the image's value range
        (``max - min``; 1 for a flat image).
    """

    name = "infidelity"
    higher_is_better = False

    def __init__(self, *, n_samples: int = 32, perturbation: str = "squares", square_size: float = 0.1,
                 square_probability: float = 0.1, substrate: str | float = "blur", blur_fraction: float = 0.05,
                 noise_std: float = 0.01):
        if n_samples < 2:
            raise OnnxplainError(f"infidelity needs n_samples >= 2, got {n_samples}", parameters=("n_samples",))
        if perturbation not in PERTURBATIONS:
            raise OnnxplainError(f"perturbation must be one of {', '.join(PERTURBATIONS)}, got {perturbation!r}",
                                 parameters=("perturbation",))
        if not (0 < square_size <= 1 and 0 < square_probability <= 1 and noise_std > 0):
            raise OnnxplainError(f"infidelity needs square_size and square_probability in (0, 1] and noise_std > 0, "
                                 f"got {square_size}, {square_probability}, {noise_std}",
                                 parameters=("square_size", "square_probability", "noise_std"))
        self._substrate = Substrate(substrate, blur_fraction=blur_fraction)
        self.n_samples = n_samples
        self.perturbation = perturbation
        self.square_size = square_size
        self.square_probability = square_probability
        self.substrate = substrate
        self.blur_fraction = blur_fraction
        self.noise_std = noise_std

    def _evaluate(self, context: EvaluationContext, saliency: np.ndarray) -> MetricResult:
        image = context.image
        original = context.similarity(image[None])[0]
        predicted_parts, actual_parts = [], []
        for start, stop in batches(self.n_samples, context.batch_size):
            # Perturbation i comes from its own generator: the same values whatever the batch size.
            perturbed = np.concatenate([self._perturb(image, 1, np.random.default_rng([context.seed, 2, i]))
                                        for i in range(start, stop)])
            actual_parts.append(original - context.similarity(perturbed))
            predicted_parts.append(np.einsum("nhwc,hw->n", image[None] - perturbed, saliency))
        predicted, actual = np.concatenate(predicted_parts), np.concatenate(actual_parts)
        energy = float(predicted @ predicted)
        beta = float(predicted @ actual) / energy if energy > 0 else 0.0
        return MetricResult(values={"infidelity": float(np.mean((beta * predicted - actual) ** 2)),
                                    "infidelity_score_change": float(np.mean(np.abs(actual)))})

    def _perturb(self, image: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        """`count` perturbed copies ``x - I`` of `image`."""
        if self.perturbation == "gaussian":
            spread = float(image.max() - image.min()) or 1.0
            noise = rng.normal(0.0, self.noise_std * spread, (count, *image.shape))
            return (image[None] - noise).astype(np.float32)
        height, width = image.shape[:2]
        side = max(1, round(self.square_size * max(height, width)))
        # A grid of squares, one more per axis than the image needs, cut at a random offset; each
        # square is removed with probability `square_probability`. One square per perturbation is
        # removed in any case, among those that the cut always leaves in the image.
        cells = (-(-height // side) + 1, -(-width // side) + 1)
        chosen = rng.random((count, *cells)) < self.square_probability
        chosen[np.arange(count), rng.integers(0, cells[0] - 1, count), rng.integers(0, cells[1] - 1, count)] = True
        squares = np.repeat(np.repeat(chosen, side, axis=1), side, axis=2)
        row, column = rng.integers(0, side, 2)
        squares = squares[:, row : row + height, column : column + width]
        return self._substrate.remove(image, squares, rng=rng)


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
    reruns_explanation = True

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
