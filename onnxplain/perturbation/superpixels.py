"""Superpixels (supervoxels in 3-D): the features that ablation, LIME, KernelSHAP and Shapley sampling
switch on and off."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from onnxplain.errors import OnnxplainError
from onnxplain.perturbation.engine import PerturbationMethod

SEGMENTATIONS = ("slic", "quickshift", "felzenszwalb", "grid")


def superpixels(image: np.ndarray, segments: str = "slic", *, n_segments: int = 50) -> np.ndarray:
    """Label every pixel of `image` with its feature, numbered from 0 without gaps.

    Parameters
    ----------
    image : ndarray of float32, shape (*spatial, C)
        The image, in [0, 1].
    segments : {'slic', 'quickshift', 'felzenszwalb', 'grid'} or str
        A scikit-image segmentation, a regular grid, or the path of a label image (a PNG or a
        ``.npy`` array of the image's spatial shape, one integer label per pixel). SLIC and the
        grid work in any number of spatial axes (supervoxels in 3-D); quickshift and felzenszwalb
        on 2-D images only.
    n_segments : int
        About how many features SLIC and the grid make; quickshift and felzenszwalb choose their
        own number from the image (their scale is set from `n_segments`).

    Returns
    -------
    ndarray of int, shape (*spatial)

    Examples
    --------
    >>> labels = superpixels(np.zeros((8, 8, 1), np.float32), "grid", n_segments=4)
    >>> int(labels.max()) + 1, int(labels[0, 0]), int(labels[7, 7])
    (4, 0, 3)
    >>> int(superpixels(np.zeros((8, 8, 8, 1), np.float32), "grid", n_segments=8).max()) + 1
    8
    """
    if n_segments < 1:
        raise OnnxplainError(f"n_segments must be at least 1, got {n_segments}", parameters=("n_segments",))
    spatial = image.shape[:-1]
    if segments == "grid":
        labels = _grid(spatial, n_segments)
    elif segments in SEGMENTATIONS:
        labels = _skimage(image, segments, n_segments)
    else:
        labels = read_labels(Path(segments), spatial)
    labels = np.asarray(labels)
    if labels.min() == 0 and np.bincount(labels.ravel()).all():  # already 0..F-1 without gaps
        return labels.astype(np.intp, copy=False)
    return np.unique(labels, return_inverse=True)[1].reshape(spatial)  # 0..F-1, in label order


def read_labels(path: Path, spatial: tuple[int, ...]) -> np.ndarray:
    """Read a label image (PNG, TIFF... or ``.npy``) whose shape must be the image's `spatial` shape."""
    if not path.is_file():
        raise OnnxplainError(
            f"superpixel labels: {path} is neither a file nor one of {', '.join(SEGMENTATIONS)}",
            parameters=("segments",),
        )
    try:
        if path.suffix == ".npy":
            labels = np.load(path)
        else:
            from PIL import Image

            with Image.open(path) as picture:
                labels = np.asarray(picture.convert("I") if picture.mode in ("P", "L", "I;16") else picture)
    except Exception as error:
        raise OnnxplainError(f"cannot read superpixel labels from {path}: {error}", parameters=("segments",)) from error
    if labels.ndim == len(spatial) + 1 and labels.shape[:-1] == spatial:
        # Regions painted in colours: each colour is one label.
        labels = np.unique(labels.reshape(-1, labels.shape[-1]), axis=0, return_inverse=True)[1].reshape(spatial)
    if labels.shape != spatial:
        raise OnnxplainError(
            f"the superpixel labels in {path} are shaped {labels.shape} but the image is {spatial}; "
            "give one label per image pixel",
            parameters=("segments",),
        )
    return labels


def _grid(spatial: tuple[int, ...], n_segments: int) -> np.ndarray:
    """Cells of a regular grid, about `n_segments` of them, as square as the image allows."""
    side = (math.prod(spatial) / n_segments) ** (1 / len(spatial))
    cells = [max(1, min(length, round(length / side))) for length in spatial]
    index = np.ix_(*[np.arange(length) * count // length for length, count in zip(spatial, cells, strict=True)])
    labels = np.zeros(spatial, np.intp)
    for axis, (coordinate, count) in enumerate(zip(index, cells, strict=True)):
        labels = labels * count + coordinate if axis else labels + coordinate
    return labels


def _skimage(image: np.ndarray, segments: str, n_segments: int) -> np.ndarray:
    from skimage import segmentation  # scikit-image is imported only when superpixels are asked for

    spatial = image.shape[:-1]
    if segments != "slic" and len(spatial) != 2:  # scikit-image's quickshift and felzenszwalb are 2-D only
        raise OnnxplainError(f"segments={segments!r} works on 2-D images only, and this image's spatial shape "
                             f"is {spatial}; use 'slic' or 'grid'", parameters=("segments",))
    gray = image.shape[-1] == 1
    if segments == "slic":
        # Grey levels are stretched to CIELAB's lightness range (0-100), so one compactness (10, the
        # value scikit-image recommends for Lab) suits grey and colour images alike.
        data = image * 100.0 if gray else image
        return segmentation.slic(data, n_segments=n_segments, compactness=10.0, channel_axis=-1, start_label=0,
                                 convert2lab=not gray, enforce_connectivity=True)
    spatial_size = math.prod(spatial)
    scale = spatial_size / n_segments
    if segments == "felzenszwalb":
        return segmentation.felzenszwalb(image, scale=scale, sigma=0.5, min_size=max(1, int(scale / 4)),
                                         channel_axis=-1)
    rgb = np.repeat(image, 3, axis=-1) if gray else image[..., :3]
    return segmentation.quickshift(rgb.astype(np.float64), kernel_size=max(1.0, math.sqrt(scale) / 4),
                                   max_dist=math.sqrt(scale), ratio=0.5, convert2lab=not gray)


class SuperpixelMethod(PerturbationMethod):
    """A perturbation method over superpixels: its masks keep or hide whole features.

    Parameters
    ----------
    segments : {'slic', 'quickshift', 'felzenszwalb', 'grid'} or str
        How to cut the image into features, or the path of a label image (see `superpixels`).
    n_segments : int
        About how many features to make.
    **options
        fill, blur_sigma, channel, score, aggregator, seed: see `PerturbationMethod`.
    """

    def __init__(self, *, segments: str = "slic", n_segments: int = 50, **options: Any):
        super().__init__(**options)
        if n_segments < 1:
            raise OnnxplainError(f"n_segments must be at least 1, got {n_segments}", parameters=("n_segments",))
        if segments not in SEGMENTATIONS and not Path(segments).is_file():
            raise OnnxplainError(
                f"segments must be one of {', '.join(SEGMENTATIONS)} or a label image file, got {segments!r}",
                parameters=("segments",),
            )
        self.segments = segments
        self.n_segments = n_segments

    def features(self, image: np.ndarray) -> np.ndarray:
        """The feature label of every pixel of `image`."""
        return superpixels(image, self.segments, n_segments=self.n_segments)
