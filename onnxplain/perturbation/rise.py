"""RISE: random low-resolution grids, upsampled, as masks (Petsiuk et al., 2018), for segmentation.

Maps are centred: a pixel's value is how much the score improves, on average, when the pixel is
kept, so 0 means no effect. The 2019 maps were ``sum(score * mask) / N``; ours divide by each
pixel's own mask sum instead of N (less noise for the same N) and subtract the mean score. Both
rank pixels the same way, up to sampling noise.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from onnxplain import io
from onnxplain.batching import batches
from onnxplain.errors import OnnxplainError
from onnxplain.method import Baseline
from onnxplain.outputs import ModelOutput
from onnxplain.perturbation.convergence import AGAINST
from onnxplain.perturbation.engine import Collector, PerturbationMethod
from onnxplain.perturbation.masks import MaskSource

_REMAKE_BATCH = 256  # masks made at once, at most, when they are made again: 59 MB at 240x240


class RiseMasks(MaskSource):
    """RISE masks: a grid of `grid_size` cells along every spatial axis, each cell kept with
    probability `p1`, upsampled (bilinearly in 2-D, trilinearly in 3-D) to ``grid_size + 1`` times
    the cell size ``ceil(side / grid_size)`` per axis, then cropped to the image at a random shift
    of less than a cell per axis.

    Mask ``i`` is drawn from ``numpy.random.default_rng([seed, i])`` (the grid, then one shift per
    axis in axis order), so it does not depend on the batch size or on how many masks came before.
    With `masks_file`, the masks are read from a ``.npy`` file shaped (N, *spatial), such as
    (N, H, W) or (N, D, H, W), or the 2019 (N, 1, H, W), instead, lazily.

    Examples
    --------
    >>> rise = RiseMasks((30, 20), n_masks=4, grid_size=3, p1=0.5, seed=1)
    >>> masks = rise.batch(0, 4).masks
    >>> masks.shape, bool(((masks >= 0) & (masks <= 1)).all())
    ((4, 30, 20), True)
    >>> bool((masks[2:] == rise.batch(2, 4).masks).all())
    True
    >>> RiseMasks((6, 10, 8), n_masks=2, grid_size=3, p1=0.5, seed=1).batch(0, 2).masks.shape
    (2, 6, 10, 8)
    """

    def __init__(self, spatial: tuple[int, ...], *, n_masks: int, grid_size: int, p1: float, seed: int,
                 masks_file: str | None = None):
        super().__init__(spatial)
        self.n_masks, self.grid_size, self.p1, self.seed = n_masks, grid_size, p1, seed
        self._file = None if masks_file is None else open_masks(Path(masks_file), self.spatial)

    def __len__(self) -> int:
        return self.n_masks if self._file is None else len(self._file)

    def _masks(self, start: int, stop: int) -> np.ndarray:
        if self._file is not None:
            return np.asarray(self._file[start:stop], dtype=np.float32).reshape(stop - start, *self.spatial)
        count, axes = stop - start, len(self.spatial)
        cells = [math.ceil(side / self.grid_size) for side in self.spatial]
        grids = np.empty((count, *(self.grid_size,) * axes), np.float32)
        shifts = np.empty((count, axes), np.intp)
        for k, i in enumerate(range(start, stop)):
            rng = np.random.default_rng([self.seed, i])
            grids[k] = rng.random(grids.shape[1:]) < self.p1
            shifts[k] = [rng.integers(cell) for cell in cells]
        # Upsample and crop in one step: pick each mask's shifted rows of the interpolation matrices.
        matrices = [up[shifts[:, axis, None] + np.arange(side)]  # (count, side, grid)
                    for axis, (up, side) in enumerate(zip(_upsampling(self.spatial, self.grid_size),
                                                          self.spatial, strict=True))]
        if axes == 2:
            rows, columns = matrices
            return rows @ grids @ columns.transpose(0, 2, 1)
        masks = grids
        for matrix in matrices:
            # Contract the first grid axis left; its upsampled axis goes last, so the axes end in order.
            masks = np.einsum("kg...,ksg->k...s", masks, matrix)
        return masks

    def save(self, path: str | Path, *, batch_size: int = 256) -> Path:
        """Write all masks to a ``.npy`` file, batch by batch, atomically, through a memory map."""
        path = Path(path)
        with io.atomic_path(path) as temporary:
            stored = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32, shape=(len(self), *self.spatial))
            for start, stop in batches(len(self), batch_size):
                stored[start:stop] = self.batch(start, stop).masks
            stored.flush()
            del stored  # closes the memory map before the file moves
        return path


@lru_cache(maxsize=8)
def _upsampling(shape: tuple[int, ...], grid_size: int) -> tuple[np.ndarray, ...]:
    """Bilinear interpolation matrices from `grid_size` cells to ``(grid_size + 1) * cell`` pixels, per axis.

    The grid is stretched over the whole upsampled length, pixel centres mapping to
    ``(pixel + 0.5) * grid_size / length - 0.5``, with edges mirrored: the RISE reference code
    (scikit-image ``resize``, order 1, mode 'reflect').
    """
    matrices = []
    last = grid_size - 1
    for side in shape:
        length = (grid_size + 1) * math.ceil(side / grid_size)
        source = (np.arange(length) + 0.5) * grid_size / length - 0.5
        source = np.abs(source)  # mirrored at the first cell centre
        source = np.minimum(source, 2 * last - source) if last > 0 else np.zeros_like(source)
        low = np.clip(np.floor(source).astype(int), 0, last)
        high = np.minimum(low + 1, last)
        weight = (source - low).astype(np.float32)
        matrix = np.zeros((length, grid_size), np.float32)
        np.add.at(matrix, (np.arange(length), low), 1 - weight)
        np.add.at(matrix, (np.arange(length), high), weight)
        matrices.append(matrix)
    return tuple(matrices)


def open_masks(path: Path, spatial: tuple[int, ...]) -> np.ndarray:
    """Memory-map a ``.npy`` file of masks for images of `spatial` shape, or say why it cannot serve.

    The file holds masks shaped (N, *spatial); a channel axis of one after N, as in the 2019 files
    (N, 1, H, W), is dropped.
    """
    if not path.is_file():
        raise OnnxplainError(f"masks file not found: {path}", parameters=("masks_file",))
    try:
        masks = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as error:
        raise OnnxplainError(f"{path} is not a .npy file of masks ({error})", parameters=("masks_file",)) from error
    if masks.ndim == len(spatial) + 2 and masks.shape[1] == 1:  # the 2019 files are (N, 1, H, W)
        masks = masks[:, 0]
    axes = {2: "H, W", 3: "D, H, W"}.get(len(spatial), "*spatial")
    if masks.ndim != len(spatial) + 1 or len(masks) == 0:
        raise OnnxplainError(f"{path} holds an array shaped {masks.shape}; masks are shaped (N, {axes}) "
                             f"for an image of spatial shape {spatial}", parameters=("masks_file",))
    if masks.shape[1:] != spatial:
        if len(spatial) == 2:
            sizes = (f"are {masks.shape[2]}x{masks.shape[1]} but the image is {spatial[1]}x{spatial[0]} "
                     "(width x height); generate masks for this image size")
        else:
            sizes = f"are shaped {masks.shape[1:]} but the volume is {spatial} ({axes}); generate masks for this size"
        raise OnnxplainError(f"the masks in {path} {sizes}", parameters=("masks_file",))
    return masks


class Rise(PerturbationMethod):
    """RISE for segmentation: random smooth masks, each pixel's map value the score's mean over all
    masks minus its mean over the masks that kept the pixel. Positive: keeping the pixel helps.

    Parameters
    ----------
    n_masks : int
        Number of masks (the 2019 ``N``). More masks, less noise; time grows linearly, memory not.
    grid_size : int
        Cells of the random grid along each spatial axis (the 2019 ``s``): ``grid_size ** 2`` cells
        in 2-D, ``grid_size ** 3`` in 3-D.
    p1 : float
        Probability that a cell is kept.
    masks_file : str, optional
        A ``.npy`` file of masks shaped (N, *spatial), such as (N, H, W) or (N, D, H, W), or the
        2019 (N, 1, H, W), to use instead of random ones.
    per_pixel_max : bool
        Also merge the maps of every region pixel by their maximum (the 2019 ``RISEResult.max()``),
        saved as the array ``rise_max``. Costs one float32 per mask and region pixel while running,
        and `per_pixel_memory` bytes for the merge.
    per_pixel_memory : int
        Memory budget of the per-pixel merge, in bytes: the masks made again, a block of
        per-pixel maps and the product added to it.
    converge : float, optional
        Stop before `n_masks` once the map is expected to correlate this much (0.95, say) with the
        map it is judged against (`converge_to`), judged every 100 masks from the maps of the even-
        and odd-numbered masks (`onnxplain.perturbation.convergence`); `n_masks` is then the most it
        runs. The record says how many masks it used and each check.
    converge_to : {'budget', 'limit'}
        ``'budget'``: the map all `n_masks` masks would give (the same seed), the map of the run
        without `converge`. ``'limit'``: the map of infinitely many masks; stricter, it stops later,
        and may not stop at all when `n_masks` is too few to come that close.
    **options
        fill, blur_sigma, channel, score, aggregator, seed: see `PerturbationMethod`.
    """

    name = "rise"
    default_score = "class-score"
    default_aggregator = "kept-mean"

    def __init__(self, *, n_masks: int = 1000, grid_size: int = 8, p1: float = 0.5, masks_file: str | None = None,
                 per_pixel_max: bool = False, per_pixel_memory: int = 256 << 20, converge: float | None = None,
                 converge_to: str = "budget", **options: Any):
        super().__init__(**options)
        if converge is not None and not 0 < converge < 1:
            raise OnnxplainError(f"converge is a correlation in (0, 1), such as 0.97; got {converge}",
                                 parameters=("converge",))
        if converge_to not in AGAINST:
            raise OnnxplainError(f"converge_to must be one of {', '.join(AGAINST)}; got {converge_to!r}",
                                 parameters=("converge_to",))
        if converge is not None and per_pixel_max:
            raise OnnxplainError("per_pixel_max keeps every mask's scores to the end; use it without converge",
                                 parameters=("converge", "per_pixel_max"))
        if n_masks < 1:
            raise OnnxplainError(f"n_masks must be at least 1, got {n_masks}", parameters=("n_masks",))
        if grid_size < 1:
            raise OnnxplainError(f"grid_size must be at least 1, got {grid_size}", parameters=("grid_size",))
        if not 0 < p1 <= 1:
            raise OnnxplainError(f"p1 is the probability of keeping a cell, in (0, 1]; got {p1}", parameters=("p1",))
        if per_pixel_memory < 1 << 20:
            raise OnnxplainError(f"per_pixel_memory must be at least 1 MiB, got {per_pixel_memory} bytes")
        self.n_masks = n_masks
        self.grid_size = grid_size
        self.p1 = p1
        self.masks_file = None if masks_file is None else str(masks_file)
        self.per_pixel_max = per_pixel_max
        self.per_pixel_memory = per_pixel_memory
        self.converge = converge
        self.converge_to = converge_to

    def mask_source(self, image: np.ndarray) -> RiseMasks:
        return RiseMasks(image.shape[:-1], n_masks=self.n_masks, grid_size=self.grid_size, p1=self.p1,
                         seed=self.seed, masks_file=self.masks_file)

    def collector(self, baseline: Baseline, total: int) -> Collector | None:
        if not self.per_pixel_max:
            return None
        return _PixelScores(np.flatnonzero(baseline.reference.region), total, self.per_pixel_memory)


class _PixelScores(Collector):
    """Each output's class probability at every region pixel, merged at the end into per-pixel maps."""

    def __init__(self, region: np.ndarray, total: int, memory_bytes: int):
        self.region = region
        self.scores = np.empty((total, len(region)), np.float32)
        self.memory_bytes = memory_bytes

    def add(self, outputs: ModelOutput, start: int, stop: int) -> None:
        self.scores[start:stop] = outputs.probability_at(self.region)

    def arrays(self, source: MaskSource) -> dict[str, np.ndarray]:
        return {"rise_max": per_pixel_maps_max(self.scores, source, memory_bytes=self.memory_bytes)}


def per_pixel_maps_max(scores: np.ndarray, source: MaskSource, *, memory_bytes: int = 256 << 20) -> np.ndarray:
    """Merge the RISE maps of every region pixel by their maximum (the 2019 ``RISEResult.max()``).

    Region pixel ``j`` has its own map: how much keeping each input pixel raises the class
    probability at ``j``. This returns, for each input pixel, the largest value over all ``j``.
    The maps are computed in blocks of region pixels, from the kept scores and the masks made again
    (they depend on the seed and their index only), so memory does not grow with the masks.

    Parameters
    ----------
    scores : ndarray of float32, shape (masks, region pixels)
        Each output's class probability at each region pixel.
    source : MaskSource
        The masks the scores came from.
    memory_bytes : int
        Budget of the merge: a quarter (at most 256 masks) for the masks made again; the rest for
        one block of per-pixel maps, the product added to it, and the small per-pixel vectors.

    Returns
    -------
    ndarray of float32, shape (*spatial)
    """
    count, region_pixels = scores.shape
    pixels = math.prod(source.spatial)
    mask_batch = int(min(_REMAKE_BATCH, max(1, memory_bytes // (4 * 4 * pixels))))
    vectors = 4 * 8 * pixels  # kept, its inverse, the best values, a mask row sum: float64 at most
    # Each region pixel of a block costs a row of maps and of their product, and a column of centred scores.
    block = int(max(1, (memory_bytes - 4 * pixels * mask_batch - vectors) // (4 * (2 * pixels + mask_batch))))
    kept = np.zeros(pixels)
    for start, stop in batches(count, mask_batch):
        kept += source.batch(start, stop).masks.reshape(stop - start, pixels).sum(axis=0, dtype=np.float64)
    inverse = np.divide(1.0, kept, out=np.zeros(pixels), where=kept > 0).astype(np.float32)  # 0 where never kept
    means = scores.mean(axis=0, dtype=np.float64).astype(np.float32)
    best = np.full(pixels, -np.inf, dtype=np.float32)
    maps = np.empty((min(block, region_pixels), pixels), np.float32)
    product = np.empty_like(maps)
    for first, last in batches(region_pixels, block):
        width = last - first
        maps[:width] = 0.0
        for start, stop in batches(count, mask_batch):
            masks = source.batch(start, stop).masks.reshape(stop - start, pixels)
            np.matmul((scores[start:stop, first:last] - means[first:last]).T, masks, out=product[:width])
            maps[:width] += product[:width]
            del masks  # before the next batch is made, so that only one is ever alive
        maps[:width] *= inverse
        np.maximum(best, maps[:width].max(axis=0), out=best)
    return best.reshape(source.spatial)
