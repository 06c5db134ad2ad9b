"""Pixel flipping: remove (or reveal) pixels in the order a map gives, and follow the model's score.

What deletion, insertion and the symmetric relevance gain share: the order a map gives, the curve
of the score as pixels are removed on a `Substrate`, and random maps to compare with. The random
baseline depends on the image, the model and the seed only, never on the map, so it is computed
once per image and shared by every method evaluated on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from onnxplain.batching import batches
from onnxplain.errors import OnnxplainError
from onnxplain.evaluation.metric import EvaluationContext, Metric, check_curve_score
from onnxplain.evaluation.substrate import Substrate

RANDOM_MAPS = ("smooth", "permutation")


def check_random(random: str, n_random: int, random_smoothing: float) -> None:
    """Raise `OnnxplainError` unless the random-baseline settings make sense."""
    if random not in RANDOM_MAPS:
        raise OnnxplainError(f"random must be one of {', '.join(RANDOM_MAPS)}, got {random!r}", parameters=("random",))
    if n_random < 1:
        raise OnnxplainError(f"n_random must be at least 1, got {n_random}", parameters=("n_random",))
    if not 0 < random_smoothing <= 1:
        raise OnnxplainError(f"random_smoothing must be in (0, 1], got {random_smoothing}",
                             parameters=("random_smoothing",))


def random_maps(shape: tuple[int, int], count: int, *, kind: str, smoothing: float,
                rng: np.random.Generator) -> np.ndarray:
    """Maps that know nothing about the model, to compare real maps with.

    Parameters
    ----------
    shape : (int, int)
        Height and width.
    count : int
        How many maps.
    kind : {'smooth', 'permutation'}
        ``'smooth'``: white noise blurred by a Gaussian of `smoothing` times the longer side, so
        that, like real maps, it ranks whole blobs together; ``'permutation'``: white noise, a
        uniformly random pixel order.
    smoothing : float
        Width of the smoothing as a fraction of the longer side.
    rng : numpy.random.Generator
        Source of the noise.

    Returns
    -------
    ndarray of float64, shape (count, H, W)

    Examples
    --------
    >>> maps = random_maps((16, 16), 2, kind="smooth", smoothing=0.1, rng=np.random.default_rng(0))
    >>> maps.shape
    (2, 16, 16)
    """
    noise = rng.standard_normal((count, *shape))
    if kind == "permutation":
        return noise
    sigma = smoothing * max(shape)
    return np.stack([gaussian_filter(one, sigma, mode="reflect") for one in noise])


def most_relevant_first(saliency: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat pixel indices, most salient first; ties broken at random, so a flat map orders at random.

    Reversed, the same order is least relevant first with the same tie-breaks.
    """
    return np.lexsort((rng.random(saliency.size), -saliency.ravel()))


def flip_curve(
    context: EvaluationContext,
    order: np.ndarray,
    fractions: np.ndarray,
    substrate: Substrate,
    *,
    reveal: bool = False,
    score: str = "class-score",
    rng: np.random.Generator,
) -> np.ndarray:
    """The score after removing (or revealing) the first `fractions` of the pixels in `order`.

    Parameters
    ----------
    context : EvaluationContext
        The model, image and reference.
    order : ndarray of int, shape (H * W,)
        Flat pixel indices, first removed first.
    fractions : ndarray of float, shape (k,)
        Fractions of the pixels removed, each in [0, 1]; one image per fraction.
    substrate : Substrate
        What removed pixels become.
    reveal : bool
        Start from the fully removed image and reveal pixels instead (insertion).
    score : {'class-score', 'dice'}
        The similarity to follow.
    rng : numpy.random.Generator
        Source of the substrate's noise (ROAD).

    Returns
    -------
    ndarray of float64, shape (k,)
        The similarity of the output to the reference, one value per fraction.
    """
    image = context.image
    flat_rank = np.empty(order.size, np.intp)
    flat_rank[order] = np.arange(order.size)
    rank = flat_rank.reshape(image.shape[:2])
    counts = np.round(np.asarray(fractions) * order.size).astype(np.intp)
    values = []
    for start, stop in batches(len(counts), context.batch_size):
        removed = rank[None] < counts[start:stop, None, None]
        if reveal:
            removed = ~removed
        values.append(context.similarity(substrate.remove(image, removed, rng=rng), score))
    return np.concatenate(values) if values else np.empty(0)


class BaselineCache:
    """The last image's random baseline, kept so that every method evaluated on it shares one.

    The key is a digest of everything the baseline depends on: the image, the reference, the
    target, the model, the seed and the metric's settings.
    """

    def __init__(self) -> None:
        self._key: str | None = None
        self._value: Any = None

    def get(self, context: EvaluationContext, settings: dict, compute: Callable[[], Any]) -> Any:
        """The cached value for `context` and `settings`, computed by `compute` when missing."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(context.image).tobytes())
        digest.update(np.ascontiguousarray(context.reference.mask).tobytes())
        if context.reference.roi is not None:
            digest.update(np.ascontiguousarray(context.reference.roi).tobytes())
        digest.update(repr((sorted(settings.items()), context.seed, context.target.class_index,
                            context.target.output, context.model.describe())).encode())
        key = digest.hexdigest()
        if key != self._key:
            self._value, self._key = compute(), key
        return self._value


class FlipMetric(Metric):
    """A metric that removes pixels in the order of a map, with a random-map baseline.

    Parameters
    ----------
    steps : int
        Steps of each curve; a curve has ``steps + 1`` points, each one forward pass.
    substrate : {'blur', 'black', 'mean', 'road'} or float
        What removed pixels become (see `Substrate`). A blur keeps the image natural enough for
        the model; black scattered pixels take most models out of their training data, so that
        every map looks no better than random.
    blur_fraction : float
        Standard deviation of the blur, as a fraction of the image's longer side.
    road_noise : float
        Noise of the ``'road'`` imputation, in image units.
    score : {'class-score', 'dice'}
        The curve's similarity: mean class probability over the target region, or Dice with the
        reference.
    random : {'smooth', 'permutation'}
        The random maps of the baseline: Gaussian-smoothed noise (the default: blobs, like real
        maps, so a map is compared with maps of the same spatial structure), or a uniformly random
        pixel order.
    n_random : int
        Random maps drawn; the baseline is their mean, with their standard deviation as spread.
        Each costs as many forward passes as the map's own curves, once per image (methods share it).
    random_smoothing : float
        Width of the smoothing of ``'smooth'`` random maps, as a fraction of the longer side.
    """

    def __init__(self, *, steps: int = 50, substrate: str | float = "blur", blur_fraction: float = 0.05,
                 road_noise: float = 0.01, score: str = "class-score", random: str = "smooth", n_random: int = 8,
                 random_smoothing: float = 0.05):
        if steps < 1:
            raise OnnxplainError(f"steps must be at least 1, got {steps}", parameters=("steps",))
        check_random(random, n_random, random_smoothing)
        self._substrate = Substrate(substrate, blur_fraction=blur_fraction, road_noise=road_noise)
        self.steps = steps
        self.substrate = substrate
        self.blur_fraction = blur_fraction
        self.road_noise = road_noise
        self.score = check_curve_score(score)
        self.random = random
        self.n_random = n_random
        self.random_smoothing = random_smoothing
        self._baselines = BaselineCache()

    def fractions(self) -> np.ndarray:
        """Fractions of the pixels removed at each point of a curve, from 0 to 1."""
        return np.linspace(0.0, 1.0, self.steps + 1)

    def random_orders(self, context: EvaluationContext) -> list[np.ndarray]:
        """One pixel order (most relevant first) per random map, from the context's seed."""
        rng = np.random.default_rng([context.seed, 2])
        maps = random_maps(context.image.shape[:2], self.n_random, kind=self.random,
                           smoothing=self.random_smoothing, rng=rng)
        return [most_relevant_first(one, rng) for one in maps]

    def curve(self, context: EvaluationContext, order: np.ndarray, fractions: np.ndarray, *, reveal: bool = False,
              stream: int = 0) -> np.ndarray:
        """`flip_curve` with this metric's substrate and score; `stream` numbers the substrate's noise."""
        rng = np.random.default_rng([context.seed, 3, stream])
        return flip_curve(context, order, fractions, self._substrate, reveal=reveal, score=self.score, rng=rng)

    def baseline(self, context: EvaluationContext, compute: Callable[[], Any]) -> Any:
        """The random baseline of this image, computed by `compute` once for every map evaluated on it."""
        return self._baselines.get(context, self.parameters(), compute)
