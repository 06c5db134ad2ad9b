"""Testnet in 3-D: volumes whose segment depends on a shape elsewhere in the volume that is never segmented.

Each 48x48x48 volume holds a cross (three orthogonal bars) and a pyramid in its first half along the
first axis, and a sphere or a cube (50/50) in its second half. The ground-truth segment is the
pyramid when the second-half shape is a sphere, and the cross when it is a cube: the decider sets
the answer without being part of it, so a faithful explainer must light it up, as in the 2-D testnet
(`onnxplain.testnet`), whose roles it keeps (``target``, ``decider``, ``distractor``).

Only numpy is used; the same seed gives the same volumes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnxplain.errors import OnnxplainError
from onnxplain.testnet import write_index
from onnxplain.volumes import Volume, write_volume

SIZE = 48
ROLES = ("target", "decider", "distractor")

_MIN_SIDE, _MAX_SIDE = 12, 18  # bounding-box side of a shape, voxels
_MIN_INTENSITY, _MAX_INTENSITY = 0.4, 1.0
_MARGIN = 2  # free voxels between a shape and the volume's border or the middle plane
_GAP = 2  # free voxels between the two first-half shapes


@dataclass(frozen=True)
class TestnetVolume:
    """One 3-D testnet sample.

    Attributes
    ----------
    image : ndarray of float32, shape (48, 48, 48)
        Intensities in [0, 1].
    segment : ndarray of bool, shape (48, 48, 48)
        Ground-truth segment (the target shape).
    shapes : dict of str to ndarray of bool
        One mask per role: ``'target'``, ``'decider'`` and ``'distractor'``.
    decider_shape : {'sphere', 'cube'}
        The shape in the second half.
    """

    __test__ = False  # not a pytest test class, despite its name

    image: np.ndarray
    segment: np.ndarray
    shapes: dict[str, np.ndarray]
    decider_shape: str


def make_volume(seed: int, index: int = 0) -> TestnetVolume:
    """Sample number `index` of the stream of `seed`: the same arguments give the same volume.

    Examples
    --------
    >>> sample = make_volume(0, 3)
    >>> sample.image.shape, sample.decider_shape in ("sphere", "cube")
    ((48, 48, 48), True)
    >>> bool(sample.segment.any()) and not (sample.segment & sample.shapes["decider"]).any()
    True
    """
    if seed < 0 or index < 0:
        raise OnnxplainError(f"seed and index are non-negative, got {seed} and {index}")
    rng = np.random.default_rng([seed, index, 3])
    decider_shape = "cube" if rng.random() < 0.5 else "sphere"
    first, second = _place_two(rng, low=_MARGIN, high=SIZE // 2 - _MARGIN)
    cross_first = rng.random() < 0.5
    cross_box, pyramid_box = (first, second) if cross_first else (second, first)
    decider_box = _place_one(rng, low=SIZE // 2 + _MARGIN, high=SIZE - _MARGIN)
    masks = {"cross": _draw("cross", cross_box), "pyramid": _draw("pyramid", pyramid_box),
             decider_shape: _draw(decider_shape, decider_box)}
    target = "cross" if decider_shape == "cube" else "pyramid"
    distractor = "pyramid" if target == "cross" else "cross"
    volume = np.zeros((SIZE,) * 3, np.float32)
    for mask in masks.values():
        volume[mask] = rng.uniform(_MIN_INTENSITY, _MAX_INTENSITY)
    shapes = {"target": masks[target], "decider": masks[decider_shape], "distractor": masks[distractor]}
    return TestnetVolume(image=volume, segment=masks[target].copy(), shapes=shapes, decider_shape=decider_shape)


def generate_volumes(count: int, *, seed: int) -> Iterator[TestnetVolume]:
    """`count` volumes of the stream of `seed`, in order."""
    if count < 1:
        raise OnnxplainError(f"count must be at least 1, got {count}")
    for index in range(count):
        yield make_volume(seed, index)


def write_volumes(out_dir: str | Path, count: int, *, seed: int) -> Path:
    """Write `count` volumes as NIfTI (1 mm voxels, identity orientation) in the dataset layout.

    ``images/000000.nii.gz`` (intensities), ``segments/000000.nii.gz`` (0 or 1), one mask per role
    under ``shapes/ROLE/``, and ``samples.csv`` (name, decider_shape, seed, index), as the 2-D
    `onnxplain.testnet.write_dataset` lays its PNG files out.
    """
    out = Path(out_dir)
    rows = []
    for index, sample in enumerate(generate_volumes(count, seed=seed)):
        name = f"{index:06d}.nii.gz"
        like = Volume(array=sample.image, affine=np.eye(4), spacing=(1.0, 1.0, 1.0))
        write_volume(sample.image, like, out / "images" / name)
        write_volume(sample.segment, like, out / "segments" / name)
        for role in ROLES:
            write_volume(sample.shapes[role], like, out / "shapes" / role / name)
        rows.append((name, sample.decider_shape, seed, index))
    write_index(out, rows)
    return out


def _side(rng: np.random.Generator) -> int:
    return int(rng.integers(_MIN_SIDE, _MAX_SIDE + 1))


def _place_one(rng: np.random.Generator, *, low: int, high: int) -> tuple[int, int, int, int]:
    """A box (corner along each axis, side) whose first axis lies in [low, high) and the rest inside the volume."""
    side = _side(rng)
    corner = [int(rng.integers(low, high - side + 1))]
    corner += [int(rng.integers(_MARGIN, SIZE - _MARGIN - side + 1)) for _ in range(2)]
    return corner[0], corner[1], corner[2], side


def _place_two(rng: np.random.Generator, *, low: int, high: int) -> list[tuple[int, int, int, int]]:
    """Two boxes in the first half that keep `_GAP` voxels apart along some axis."""
    for _ in range(1000):
        boxes = [_place_one(rng, low=low, high=high) for _ in range(2)]
        (a0, a1, a2, sa), (b0, b1, b2, sb) = boxes
        if any(ca + sa + _GAP <= cb or cb + sb + _GAP <= ca for ca, cb in ((a0, b0), (a1, b1), (a2, b2))):
            return boxes
    raise OnnxplainError("could not place two shapes apart; this is a bug in the generator")


def _draw(kind: str, box: tuple[int, int, int, int]) -> np.ndarray:
    """The mask of a shape filling the cube box (corner, side)."""
    c0, c1, c2, side = box
    grid = np.indices((SIZE,) * 3, dtype=np.float32)
    centre = np.array([c0, c1, c2], np.float32)[:, None, None, None] + (side - 1) / 2
    offset = grid - centre
    inside = np.all(np.abs(offset) <= (side - 1) / 2, axis=0)
    if kind == "cube":
        return inside
    if kind == "sphere":
        return np.sum(offset**2, axis=0) <= ((side - 1) / 2) ** 2
    if kind == "cross":  # three bars a third of the side thick, through the centre
        thin = np.abs(offset) <= side / 6
        return inside & ((thin[1] & thin[2]) | (thin[0] & thin[2]) | (thin[0] & thin[1]))
    if kind == "pyramid":  # a square base at the start of the last axis, its apex at the end
        height = (offset[2] + (side - 1) / 2) / max(side - 1, 1)  # 0 at the base, 1 at the apex
        half = (side - 1) / 2 * (1 - height)
        return inside & (np.abs(offset[0]) <= half) & (np.abs(offset[1]) <= half)
    raise OnnxplainError(f"unknown shape {kind!r}")
