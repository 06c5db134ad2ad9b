"""Substrates: what removed pixels become while a metric removes them, from a blur to ROAD imputation.

A metric that removes pixels judges the map only as far as the model still sees a natural image:
pixels set to black in a scattered pattern leave the data the model was trained on, and every map
then looks bad. A strong blur keeps the image's low frequencies, and ROAD's noisy linear
imputation (Rong et al., 2022, "A Consistent and Efficient Evaluation Strategy for Attribution
Methods") fills each removed pixel from its neighbours, so the shape of the removed region leaks
as little as possible.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from onnxplain.errors import OnnxplainError
from onnxplain.perturbation.fill import check_fill, fill_image

SUBSTRATES = ("blur", "black", "mean", "road")

# ROAD's neighbour weights: 1/6 for the four direct neighbours, 1/12 for the four diagonal ones.
_NEIGHBOURS = (
    (-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12),
    (0, -1, 1 / 6), (0, 1, 1 / 6),
    (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12),
)


class Substrate:
    """Replace removed pixels of an image by a blur, black, the mean, a constant or ROAD imputation.

    Contract: `remove` takes the image (H, W, C) and boolean masks (n, H, W), True where a pixel is
    removed, and returns n new float32 images; the image itself is never changed.

    Parameters
    ----------
    kind : {'blur', 'black', 'mean', 'road'} or float
        ``'blur'``: the image blurred by a Gaussian of standard deviation `blur_fraction` times the
        image's longer side; ``'black'``: 0; ``'mean'``: the image's mean per channel; ``'road'``:
        noisy linear imputation (`road_impute`); a number: that constant. ROAD solves one sparse
        system per image, about 0.1 to 0.4 s at 240 x 240 pixels, so a 50-step curve costs seconds
        where the other substrates cost nothing beside the model.
    blur_fraction : float
        Standard deviation of the blur as a fraction of the image's longer side (0.05: 12 pixels
        on a 240-pixel image, enough to erase shapes of a few dozen pixels).
    road_noise : float
        Standard deviation of ROAD's noise, in image units ([0, 1]).

    Examples
    --------
    >>> image = np.ones((8, 8, 1), np.float32)
    >>> removed = np.zeros((1, 8, 8), bool)
    >>> removed[0, 2:4, 2:4] = True
    >>> Substrate("black").remove(image, removed, rng=np.random.default_rng(0))[0, 2:5, 2, 0].tolist()
    [0.0, 0.0, 1.0]
    """

    def __init__(self, kind: str | float = "blur", *, blur_fraction: float = 0.05, road_noise: float = 0.01):
        if isinstance(kind, str) and kind not in SUBSTRATES:
            try:
                kind = float(kind)
            except ValueError:
                raise OnnxplainError(
                    f"substrate must be one of {', '.join(SUBSTRATES)} or a number, got {kind!r}",
                    parameters=("substrate",),
                ) from None
        if not 0 < blur_fraction <= 1:
            raise OnnxplainError(f"blur_fraction must be in (0, 1], got {blur_fraction}", parameters=("blur_fraction",))
        if road_noise < 0:
            raise OnnxplainError(f"road_noise must be non-negative, got {road_noise}", parameters=("road_noise",))
        self.kind = kind
        self.blur_fraction = blur_fraction
        self.road_noise = road_noise
        self._fill: tuple[np.ndarray, np.ndarray | float] | None = None  # (the image, its fill)

    def describe(self) -> str:
        """A short label, such as ``'blur (sigma 5% of the side)'``, for tables and plots."""
        if self.kind == "blur":
            return f"blur (sigma {self.blur_fraction:.0%} of the side)"
        return str(self.kind)

    def remove(self, image: np.ndarray, removed: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
        """`image` with the pixels of each mask replaced by the substrate.

        Parameters
        ----------
        image : ndarray of float32, shape (H, W, C)
            The image.
        removed : ndarray of bool, shape (n, H, W)
            True where a pixel is removed.
        rng : numpy.random.Generator
            Source of ROAD's noise (unused by the other substrates).

        Returns
        -------
        ndarray of float32, shape (n, H, W, C)
        """
        if self.kind == "road":
            return np.stack([road_impute(image, mask, noise=self.road_noise, rng=rng) for mask in removed])
        fill = self.fill(image)
        return np.where(removed[..., None], fill, image[None]).astype(np.float32)

    def fill(self, image: np.ndarray) -> np.ndarray | float:
        """What every removed pixel becomes, for the substrates that do not depend on the mask.

        Made once per image: a curve or an infidelity estimate asks for it at every batch, and a
        blur of a large image costs more than comparing it with the last one.
        """
        if self.kind == "road":
            raise OnnxplainError("ROAD imputation depends on which pixels are removed; use remove()")
        if self._fill is not None and self._fill[0].shape == image.shape and np.array_equal(self._fill[0], image):
            return self._fill[1]
        sigma = self.blur_fraction * max(image.shape[:2])
        fill = fill_image(image, check_fill(self.kind, name="substrate"), blur_sigma=sigma)
        self._fill = (image.copy(), fill)
        return fill


def road_impute(image: np.ndarray, removed: np.ndarray, *, noise: float, rng: np.random.Generator) -> np.ndarray:
    """ROAD's noisy linear imputation: each removed pixel becomes the weighted mean of its neighbours.

    The removed pixels are the unknowns of one sparse linear system: each equals the mean of its
    eight neighbours (weights 1/6 for direct and 1/12 for diagonal ones, renormalised over those
    inside the image), where known neighbours enter with their values and removed ones as unknowns.
    It is solved with `scipy.sparse.linalg.spsolve`, one right-hand side per channel, and Gaussian
    noise of standard deviation `noise` is added to the imputed pixels only (Rong et al., 2022).
    A linear ramp is reproduced exactly away from the border, apart from the noise.

    Parameters
    ----------
    image : ndarray of float, shape (H, W, C)
        The image.
    removed : ndarray of bool, shape (H, W)
        True where a pixel is removed.
    noise : float
        Standard deviation of the noise, in image units.
    rng : numpy.random.Generator
        Source of the noise.

    Returns
    -------
    ndarray of float32, shape (H, W, C)
        A new image; the kept pixels are unchanged.

    Examples
    --------
    >>> ramp = np.add.outer(np.arange(5.0), np.arange(5.0))[..., None] / 8
    >>> hole = np.zeros((5, 5), bool)
    >>> hole[2, 2] = True
    >>> float(road_impute(ramp, hole, noise=0.0, rng=np.random.default_rng(0))[2, 2, 0])
    0.5
    """
    height, width, channels = image.shape
    flat_removed = removed.ravel()
    unknown = np.flatnonzero(flat_removed)
    result = image.reshape(-1, channels).astype(np.float64)  # a copy: the caller's image is kept
    if unknown.size == 0:
        return image.astype(np.float32)
    if unknown.size == flat_removed.size:
        # Nothing is left to interpolate from: the system would be singular. The image's mean is
        # the flattest guess, as when every neighbour is itself unknown.
        result[:] = result.mean(axis=0)
    else:
        result[unknown] = _solve_neighbour_means(result, flat_removed, unknown, height, width)
    result[unknown] += rng.normal(0.0, noise, (unknown.size, channels)) if noise > 0 else 0.0
    return result.reshape(height, width, channels).astype(np.float32)


def _solve_neighbour_means(
    flat: np.ndarray, flat_removed: np.ndarray, unknown: np.ndarray, height: int, width: int
) -> np.ndarray:
    """Values of the `unknown` pixels that each equal the weighted mean of their neighbours."""
    count = unknown.size
    variable = np.full(flat_removed.size, -1)
    variable[unknown] = np.arange(count)
    rows, columns = np.divmod(unknown, width)
    weight_sum = np.zeros(count)
    right_side = np.zeros((count, flat.shape[1]))
    entries_row, entries_column, entries = [], [], []
    for d_row, d_column, weight in _NEIGHBOURS:
        row, column = rows + d_row, columns + d_column
        inside = (row >= 0) & (row < height) & (column >= 0) & (column < width)
        neighbour = np.where(inside, row * width + column, 0)
        weight_sum += weight * inside
        also_unknown = inside & flat_removed[neighbour]
        known = inside & ~also_unknown
        right_side[known] += weight * flat[neighbour[known]]
        entries_row.append(np.flatnonzero(also_unknown))
        entries_column.append(variable[neighbour[also_unknown]])
        entries.append(np.full(int(also_unknown.sum()), -weight))
    # (sum of weights) * v_i - sum over unknown neighbours of w * v_j = sum over known neighbours of w * x_j;
    # every connected group of unknowns touches a known pixel, so the system is non-singular.
    system = scipy.sparse.csc_matrix(
        (np.concatenate(entries), (np.concatenate(entries_row), np.concatenate(entries_column))), shape=(count, count)
    ) + scipy.sparse.diags(weight_sum, format="csc")
    solution = scipy.sparse.linalg.spsolve(system, right_side)
    return np.asarray(solution).reshape(count, -1)
