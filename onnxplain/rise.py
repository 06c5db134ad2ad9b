"""RISE: random low-resolution grids, upsampled, as masks (Petsiuk et al., 2018), for segmentation.

`RisePerturbation` is the ``rise`` plugin. `SegmentationRISE` and `RISEResult` keep the API of the
2019 ``interpret_segmentation.rise`` module (``generate_masks(N, s, p1, savepath)``,
``load_masks``, ``explainer(image)``, ``result.max()``, ``result.mean()``) so its scripts port by
changing the import; the model is an ONNX file or an `OnnxModel`.

Maps are centred: a pixel's value is how much the score rises, on average, when the pixel is kept,
so 0 means no effect. The 2019 maps were ``sum(score * mask) / N``; ours divide by each pixel's own
mask sum instead of N (less noise for the same N) and subtract the mean score. Both rank pixels the
same way, up to sampling noise.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from onnxplain import engine, io
from onnxplain.errors import OnnxplainError
from onnxplain.model import OnnxModel, load_model
from onnxplain.perturbation import Perturbation
from onnxplain.result import Explanation
from onnxplain.targets import Target


class RisePerturbation(Perturbation):
    """RISE masks: a `grid_size` × `grid_size` grid of cells, each kept with probability `p1`,
    upsampled bilinearly to ``grid_size + 1`` times the cell size ``ceil(H / grid_size)`` ×
    ``ceil(W / grid_size)``, then cropped to the image at a random shift of less than a cell.

    Mask ``i`` is drawn from ``numpy.random.default_rng([seed, i])``, so it does not depend on the
    batch size or on how many masks came before.

    Parameters
    ----------
    n_masks : int
        Number of masks (the 2019 ``N``). More masks, less noise; time grows linearly, memory not.
    grid_size : int
        Cells per side of the random grid (the 2019 ``s``).
    p1 : float
        Probability that a cell is kept.
    masks_file : str, optional
        A ``.npy`` file of masks shaped (N, H, W) or (N, 1, H, W) to use instead of random ones,
        such as one written by `save_masks`; it is read lazily, batch by batch.
    fill, blur_sigma, channel
        See `Perturbation`.

    Examples
    --------
    >>> rise = RisePerturbation(n_masks=4, grid_size=3, p1=0.5)
    >>> masks = rise.make_masks((30, 20), 0, 4, seed=1)
    >>> masks.shape, bool(((masks >= 0) & (masks <= 1)).all())
    ((4, 30, 20), True)
    >>> bool((masks[2:] == rise.make_masks((30, 20), 2, 4, seed=1)).all())
    True
    """

    name = "rise"
    weighting = "kept"
    default_score = "class-score"

    def __init__(
        self,
        *,
        n_masks: int = 1000,
        grid_size: int = 8,
        p1: float = 0.5,
        masks_file: str | None = None,
        fill: str | float = "black",
        blur_sigma: float = 10.0,
        channel: int | None = None,
    ):
        super().__init__(fill=fill, blur_sigma=blur_sigma, channel=channel)
        if n_masks < 1:
            raise OnnxplainError(f"n_masks must be at least 1, got {n_masks}")
        if grid_size < 1:
            raise OnnxplainError(f"grid_size must be at least 1, got {grid_size}")
        if not 0 < p1 <= 1:
            raise OnnxplainError(f"p1 is the probability of keeping a cell, in (0, 1]; got {p1}")
        self.n_masks = n_masks
        self.grid_size = grid_size
        self.p1 = p1
        self.masks_file = None if masks_file is None else str(masks_file)
        self._file = None if masks_file is None else _open_masks(Path(masks_file))

    def _count(self, shape: tuple[int, int]) -> int:
        return self.n_masks if self._file is None else len(self._file)

    def _make_masks(self, shape: tuple[int, int], start: int, stop: int, seed: int) -> np.ndarray:
        if self._file is not None:
            if self._file.shape[-2:] != shape:
                raise OnnxplainError(
                    f"the masks in {self.masks_file} are {self._file.shape[-1]}x{self._file.shape[-2]} but the image "
                    f"is {shape[1]}x{shape[0]} (width x height); generate masks for this image size"
                )
            return np.asarray(self._file[start:stop], dtype=np.float32).reshape(stop - start, *shape)
        rows_up, columns_up = _upsampling(shape, self.grid_size)
        cell_height, cell_width = (math.ceil(side / self.grid_size) for side in shape)
        count = stop - start
        grids = np.empty((count, self.grid_size, self.grid_size), np.float32)
        shift_rows = np.empty(count, np.intp)
        shift_columns = np.empty(count, np.intp)
        for k, i in enumerate(range(start, stop)):
            rng = np.random.default_rng([seed, i])
            grids[k] = rng.random((self.grid_size, self.grid_size)) < self.p1
            shift_rows[k] = rng.integers(cell_height)
            shift_columns[k] = rng.integers(cell_width)
        # Upsample and crop in one step: pick each mask's shifted rows of the interpolation matrices.
        rows = rows_up[shift_rows[:, None] + np.arange(shape[0])]  # (count, H, grid)
        columns = columns_up[shift_columns[:, None] + np.arange(shape[1])]  # (count, W, grid)
        return rows @ grids @ columns.transpose(0, 2, 1)

    def save_masks(self, path: str | Path, shape: tuple[int, int], *, seed: int = 0, batch_size: int = 256) -> Path:
        """Write all masks for `shape` (H, W) to a ``.npy`` file, batch by batch, atomically.

        Memory stays flat in `n_masks`: the file is filled through a memory map.
        """
        path = Path(path)
        total = self.count(shape)
        with io.atomic_path(path) as temporary:
            stored = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32, shape=(total, *shape))
            for start in range(0, total, batch_size):
                stop = min(start + batch_size, total)
                stored[start:stop] = self.make_masks(shape, start, stop, seed=seed)
            stored.flush()
            del stored  # closes the memory map before the file moves
        return path


@lru_cache(maxsize=8)
def _upsampling(shape: tuple[int, int], grid_size: int) -> tuple[np.ndarray, np.ndarray]:
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
    return matrices[0], matrices[1]


def _open_masks(path: Path) -> np.ndarray:
    if not path.is_file():
        raise OnnxplainError(f"masks file not found: {path}")
    try:
        masks = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as error:
        raise OnnxplainError(f"{path} is not a .npy file of masks ({error})") from error
    if masks.ndim == 4 and masks.shape[1] == 1:  # the 2019 files are (N, 1, H, W)
        masks = masks[:, 0]
    if masks.ndim != 3 or len(masks) == 0:
        raise OnnxplainError(f"{path} holds an array shaped {masks.shape}; masks are shaped (N, H, W)")
    return masks


_REMAKE_BATCH = 256  # masks made at once when they are made again: 59 MB at 240x240


def per_pixel_maps_max(explanation: Explanation, *, memory_bytes: int = 256 << 20) -> np.ndarray:
    """Merge the RISE maps of every region pixel by their maximum (the 2019 ``RISEResult.max()``).

    Each output pixel ``j`` of the region gets its own map: how much keeping each input pixel raises
    the class probability at ``j``. This returns, for each input pixel, the largest value over all
    ``j``. The maps are computed in blocks of region pixels that fit in `memory_bytes`, from the
    kept per-pixel scores and masks made again from the seed, so memory does not grow with the
    number of masks.

    Parameters
    ----------
    explanation : Explanation
        Made with ``keep_pixel_scores=True`` and a 'kept' perturbation.
    memory_bytes : int
        Budget for one block of per-pixel maps.

    Returns
    -------
    ndarray of float32, shape (H, W)
    """
    scores = explanation.pixel_scores
    if scores is None:
        raise OnnxplainError("per-pixel maps need an explanation made with keep_pixel_scores=True")
    if explanation.perturbation.weighting != "kept":
        raise OnnxplainError(
            f"per-pixel maps merge maps of kept pixels, as RISE makes; {explanation.method!r} occludes instead"
        )
    shape = explanation.saliency.shape
    pixels = shape[0] * shape[1]
    count, region_pixels = scores.shape
    centred = scores - scores.mean(axis=0, dtype=np.float64).astype(np.float32)
    block = max(1, memory_bytes // (4 * pixels))

    def batches():
        """The masks again, in batches of flat rows (they depend on the seed and their index only)."""
        for start in range(0, count, _REMAKE_BATCH):
            stop = min(start + _REMAKE_BATCH, count)
            masks = explanation.perturbation.make_masks(shape, start, stop, seed=explanation.seed)
            yield start, stop, masks.reshape(stop - start, pixels)

    kept = sum(masks.sum(axis=0, dtype=np.float64) for _, _, masks in batches())
    inverse = np.divide(1.0, kept, out=np.zeros(pixels), where=kept > 0).astype(np.float32)  # 0 where never kept
    best = np.full(pixels, -np.inf, dtype=np.float32)
    for first in range(0, region_pixels, block):
        columns = slice(first, min(first + block, region_pixels))
        maps = np.zeros((columns.stop - first, pixels), np.float32)
        for start, stop, masks in batches():
            maps += centred[start:stop, columns].T @ masks
        maps *= inverse
        np.maximum(best, maps.max(axis=0), out=best)
    return best.reshape(shape)


class RISEResult:
    """The maps of a RISE explanation, in the 2019 API.

    Parameters
    ----------
    explanation : Explanation
        Made by `SegmentationRISE` (or `onnxplain.explain` with ``keep_pixel_scores=True``).
    """

    def __init__(self, explanation: Explanation):
        self.explanation = explanation
        self._max: np.ndarray | None = None

    def mean(self) -> np.ndarray:
        """The per-pixel maps merged by their mean: the class-score RISE map of the region."""
        return self.explanation.saliency

    def max(self) -> np.ndarray:
        """The per-pixel maps merged by their maximum; computed on first use (see `per_pixel_maps_max`)."""
        if self._max is None:
            self._max = per_pixel_maps_max(self.explanation)
        return self._max


class SegmentationRISE:
    """The 2019 RISE explainer: ``explainer = SegmentationRISE(model, (240, 240))``.

    Parameters
    ----------
    model : OnnxModel, str or Path
        The model, or its ``.onnx`` file (loaded on `device`).
    input_size : tuple of int
        Image width and height.
    device : {'auto', 'cpu', 'cuda'}
        Where to run a model given as a path.
    batch_size : int
        Perturbed images per forward pass.
    """

    def __init__(
        self, model: OnnxModel | str | Path, input_size: tuple[int, int], device: str = "auto", batch_size: int = 16
    ):
        if not isinstance(model, (OnnxModel, str, Path)):
            raise OnnxplainError(
                f"SegmentationRISE takes an ONNX file or an OnnxModel, not a {type(model).__name__}; "
                "export the model first, for example with `onnxplain export torch`"
            )
        self.model = load_model(model, device=device, batch_size=batch_size)
        self.width, self.height = (int(v) for v in input_size)
        self.batch_size = batch_size
        self.perturbation: RisePerturbation | None = None
        self.seed = 0

    def generate_masks(self, N: int, s: int, p1: float, savepath: str | Path | None = None, *, seed: int = 0) -> None:  # noqa: N803 - the 2019 names
        """Set `N` random masks of an `s` × `s` grid with keep probability `p1`; save them to `savepath` if given."""
        self.perturbation = RisePerturbation(n_masks=N, grid_size=s, p1=p1)
        self.seed = seed
        if savepath is not None:
            self.perturbation.save_masks(savepath, (self.height, self.width), seed=seed)

    def load_masks(self, filepath: str | Path) -> None:
        """Use the masks saved in `filepath` (an .npy file shaped (N, H, W) or (N, 1, H, W))."""
        self.perturbation = RisePerturbation(masks_file=str(filepath))

    def __call__(
        self, image: np.ndarray, *, target: Target | None = None, progress: engine.Progress | None = None
    ) -> RISEResult:
        """Explain `image` for the region the model segments (or `target`), and return its maps."""
        if self.perturbation is None:
            raise OnnxplainError("call generate_masks(N, s, p1) or load_masks(path) before explaining")
        image = np.asarray(image)
        if image.ndim == 4 and image.shape[0] == 1:  # the 2019 examples passed a batch of one
            image = image[0]
        if image.ndim == 3 and image.shape[0] <= 4 < image.shape[2]:
            image = np.moveaxis(image, 0, -1)
        explanation = engine.explain(
            self.model,
            image,
            method=self.perturbation,
            score="class-score",
            target=target,
            seed=self.seed,
            batch_size=self.batch_size,
            progress=progress,
            keep_pixel_scores=True,
        )
        return RISEResult(explanation)
