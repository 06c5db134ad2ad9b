"""Distances between pixel (voxel) sets, in the unit of a spacing: what the distance scores measure.

Every function takes an optional spacing, the size of a pixel (voxel) along each axis; distances are
then in its unit (millimetres for a NIfTI volume), and in pixels without one. Searches scale indices
to positions and look only at a mask's edge (`edge_pixels`), where the nearest pixel of a set to
any pixel outside it lies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from onnxplain.errors import OnnxplainError
from onnxplain.targets import checked_spacing


def empty_distance(shape: tuple[int, ...], spacing: Sequence[float] | None = None) -> float:
    """Hausdorff distance between an empty and a non-empty mask of `shape`: its diagonal.

    No two pixels (voxels) of the image are further apart, so an output that lost the whole segment
    (or a reference that has none) counts as far as any output can be, and stays finite for averaging.

    Parameters
    ----------
    shape : tuple of int
        The mask's shape, one length per spatial axis.
    spacing : sequence of float, optional
        The size of a pixel (voxel) along each axis; None: 1 per axis, i.e. pixels.

    Returns
    -------
    float
        ``sqrt(sum(((side - 1) * spacing) ** 2))``, in the spacing's unit (millimetres for a NIfTI volume).

    Examples
    --------
    >>> empty_distance((4, 5))
    5.0
    >>> round(empty_distance((3, 3, 3), spacing=(1.0, 1.0, 2.0)), 6)
    4.898979
    """
    spacing = checked_spacing(spacing, len(shape))
    # hypot folded over the axes: in 2-D exactly np.hypot(height - 1, width - 1), as before spacing.
    return float(np.hypot.reduce([(side - 1) * step for side, step in zip(shape, spacing, strict=True)]))


def hausdorff_distance(mask_a: np.ndarray, mask_b: np.ndarray, *, spacing: Sequence[float] | None = None) -> float:
    """Symmetric Hausdorff distance between the pixel (voxel) coordinates of two boolean masks.

    Parameters
    ----------
    mask_a, mask_b : ndarray of bool, shape (H, W) or (I, J, K)
        The two pixel sets.
    spacing : sequence of float, optional
        The size of a pixel (voxel) along each axis, such as a NIfTI volume's spacing in
        millimetres; None: 1 per axis, i.e. distances in pixels.

    Returns
    -------
    float
        The largest distance, in the spacing's unit, from a pixel of either mask to the nearest
        pixel of the other; 0 when both are empty and `empty_distance` when only one is (the
        distance to an empty set is otherwise undefined).

    Examples
    --------
    >>> a = np.zeros((20, 20), bool); a[2:6, 2:6] = True
    >>> b = np.roll(a, 5, axis=0)  # the same square 5 px lower
    >>> hausdorff_distance(a, b)
    5.0
    >>> hausdorff_distance(a, b, spacing=(0.5, 2.0))  # rows 0.5 mm apart
    2.5
    """
    mask_a, mask_b = np.asarray(mask_a, dtype=bool), np.asarray(mask_b, dtype=bool)
    if mask_a.shape != mask_b.shape:
        raise OnnxplainError(f"masks shaped {mask_a.shape} and {mask_b.shape} cannot be compared")
    steps = checked_spacing(spacing, mask_a.ndim)
    has_a, has_b = mask_a.any(), mask_b.any()
    if not (has_a and has_b):
        return 0.0 if has_a == has_b else empty_distance(mask_a.shape, steps)
    return max(_directed(mask_a, mask_b, steps), _directed(mask_b, mask_a, steps))


def _directed(mask_a: np.ndarray, mask_b: np.ndarray, spacing: tuple[float, ...]) -> float:
    """max over pixels of `mask_a` of the distance to the nearest pixel of `mask_b` (non-empty)."""
    outside = np.argwhere(mask_a & ~mask_b)
    if len(outside) == 0:
        return 0.0
    return float(distances_to_edge(mask_b, outside, spacing).max())


def distances_to_edge(mask: np.ndarray, points: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """The distance from each of `points` (k, ndim), all outside non-empty `mask`, to its nearest pixel."""
    return nearest_distances(points, np.argwhere(edge_pixels(mask, ndim=mask.ndim)), spacing)


def nearest_distances(points: np.ndarray, candidates: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """The distance from each of `points` (k, ndim) to the nearest of `candidates` (m >= 1, ndim), in
    the spacing's unit: indices are scaled to positions before the search."""
    scale = np.asarray(spacing)
    return cKDTree(candidates * scale).query(points * scale)[0]


def edge_pixels(mask: np.ndarray, *, ndim: int = 2) -> np.ndarray:
    """Pixels (voxels) of `mask` with a face neighbour outside it or outside the image, along any axis.

    This is medical imaging's surface of a mask: ``mask & ~binary_erosion(mask)`` with the
    face-connected structure (4-neighbours in 2-D, 6 in 3-D) and the image's outside counted as
    background. The nearest pixel of a set to any pixel outside it lies on this edge, whatever the
    spacing (stepping from an interior pixel towards the query along one axis always gets closer),
    so nearest-pixel searches need only the edge.

    Parameters
    ----------
    mask : ndarray of bool, shape (..., H, W) or (..., I, J, K)
        One mask, or a stack of them along leading axes.
    ndim : int
        How many trailing axes are spatial: 2 for images, 3 for volumes; leading axes are a stack.
        The default, 2, reads a (I, J, K) array as a stack of images: give ``ndim=3`` for a volume.

    Returns
    -------
    ndarray of bool, shaped like `mask`

    Examples
    --------
    >>> cube = np.zeros((5, 5, 5), bool); cube[1:4, 1:4, 1:4] = True
    >>> int(edge_pixels(cube, ndim=3).sum())  # 27 voxels, all but the centre on the surface
    26
    """
    if not 1 <= ndim <= mask.ndim:
        raise OnnxplainError(f"ndim must be between 1 and {mask.ndim} for a mask shaped {mask.shape}, got {ndim}")
    interior = mask.copy()
    for axis in range(mask.ndim - ndim, mask.ndim):
        head = (slice(None),) * axis
        interior[head + (slice(1, None),)] &= mask[head + (slice(None, -1),)]
        interior[head + (slice(None, -1),)] &= mask[head + (slice(1, None),)]
        interior[head + ([0, -1],)] = False  # the image's outside is background
    return mask & ~interior


def distances_to_mask(mask: np.ndarray, points: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """The distance from each of `points` (k, ndim) to the nearest pixel of non-empty `mask` (0 inside it)."""
    distances = np.zeros(len(points))
    missed = ~mask[tuple(points.T)]
    if missed.any():
        distances[missed] = distances_to_edge(mask, points[missed], spacing)
    return distances


def surface_distances(
    mask_a: np.ndarray, mask_b: np.ndarray, *, spacing: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Surface distances between two masks, as medical image segmentation measures them.

    A mask's surface is its `edge_pixels`: the voxels with a face neighbour outside the mask or
    outside the volume, exactly medpy's ``mask ^ binary_erosion(mask, connectivity=1)``. Each
    surface voxel of one mask has a distance to the nearest surface voxel of the other (0 only
    where the surfaces touch: unlike `hausdorff_distance`, a voxel inside the other mask counts
    its distance to that mask's surface).

    Parameters
    ----------
    mask_a, mask_b : ndarray of bool, shape (H, W) or (I, J, K)
        Two non-empty masks.
    spacing : sequence of float, optional
        The size of a voxel along each axis, such as a NIfTI volume's spacing in millimetres;
        None: 1 per axis, i.e. distances in pixels.

    Returns
    -------
    a_to_b : ndarray of float64
        One distance per surface voxel of `mask_a`, in the spacing's unit, in C order.
    b_to_a : ndarray of float64
        One distance per surface voxel of `mask_b`.

    Raises
    ------
    OnnxplainError
        When the masks differ in shape or either is empty (it has no surface to measure from).

    Examples
    --------
    >>> a = np.zeros((8, 8, 8), bool); a[2:5, 2:5, 2:5] = True
    >>> b = np.roll(a, 1, axis=2)  # one voxel further along k, 3 mm apart
    >>> a_to_b, b_to_a = surface_distances(a, b, spacing=(1.0, 1.0, 3.0))
    >>> float(a_to_b.max()), float(b_to_a.max())
    (3.0, 3.0)
    """
    mask_a, mask_b = np.asarray(mask_a, dtype=bool), np.asarray(mask_b, dtype=bool)
    if mask_a.shape != mask_b.shape:
        raise OnnxplainError(f"masks shaped {mask_a.shape} and {mask_b.shape} cannot be compared")
    if not (mask_a.any() and mask_b.any()):
        # The distance to an empty set is undefined; scores give such an output `empty_distance`.
        raise OnnxplainError("surface distances need two non-empty masks; one of them is empty")
    steps = checked_spacing(spacing, mask_a.ndim)
    surface_b = np.argwhere(edge_pixels(mask_b, ndim=mask_b.ndim))
    return surfaces_to(mask_a, surface_b, steps)


def surfaces_to(mask: np.ndarray, surface: np.ndarray, spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(from `mask`'s surface to `surface` (k, ndim) indices, from `surface` to `mask`'s surface)."""
    own = np.argwhere(edge_pixels(mask, ndim=mask.ndim))
    return nearest_distances(own, surface, spacing), nearest_distances(surface, own, spacing)
