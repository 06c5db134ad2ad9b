"""Testnet: a synthetic segmentation task whose answer depends on a shape that is never segmented.

Each 240×240 grayscale image holds a cross and a triangle in its left half and a circle or a square
(50/50) in its right half. The ground-truth segment is the triangle when the right shape is a circle,
and the cross when it is a square. The right shape decides the segment without being part of it, so
a faithful explainer must light it up.

Roles name the shapes by what they do in a sample:

- ``target``: the left shape that is segmented;
- ``decider``: the right shape (circle or square);
- ``distractor``: the other left shape.

Only numpy and Pillow are used, so the core package can generate data without a deep-learning
framework.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from onnxplain import io
from onnxplain.errors import OnnxplainError

SIZE = 240
ROLES = ("target", "decider", "distractor")

# Shape sizes (bounding-box side, pixels) and intensities are jittered, as in the seed dataset.
_MIN_SIDE, _MAX_SIDE = 32, 52
_MIN_INTENSITY, _MAX_INTENSITY = 100, 255
_MARGIN = 6  # free pixels between a shape and the image border or the middle line
_GAP = 6  # free pixels between the two left shapes


@dataclass(frozen=True)
class TestnetSample:
    """One testnet sample.

    Attributes
    ----------
    image : ndarray of float32, shape (240, 240)
        Grayscale image in [0, 1].
    segment : ndarray of bool, shape (240, 240)
        Ground-truth segment (the target shape).
    shapes : dict of str to ndarray of bool
        One mask per role: ``'target'``, ``'decider'`` and ``'distractor'``.
    decider_shape : {'circle', 'square'}
        The shape drawn in the right half.
    """

    __test__ = False  # not a pytest test class, despite its name

    image: np.ndarray
    segment: np.ndarray
    shapes: dict[str, np.ndarray]
    decider_shape: str


def make_sample(seed: int, index: int = 0) -> TestnetSample:
    """Draw testnet sample number `index` of the stream given by `seed`.

    Every sample has its own random stream, derived from ``(seed, index)``, so a sample can be
    regenerated alone and does not depend on how many samples were drawn before it.

    Parameters
    ----------
    seed : int
        Seed of the dataset.
    index : int, optional
        Position of the sample in the dataset.

    Returns
    -------
    TestnetSample

    Examples
    --------
    >>> sample = make_sample(seed=0, index=3)
    >>> sample.image.shape, sample.image.dtype
    ((240, 240), dtype('float32'))
    >>> bool((sample.segment == sample.shapes["target"]).all())
    True
    """
    if seed < 0 or index < 0:
        raise OnnxplainError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    rng = np.random.default_rng([seed, index])
    decider_shape = "circle" if rng.random() < 0.5 else "square"
    target_shape = "triangle" if decider_shape == "circle" else "cross"
    distractor_shape = "cross" if decider_shape == "circle" else "triangle"

    half = SIZE // 2
    left_boxes = _place_two(rng, x0=0, x1=half)
    right_box = _place_one(rng, x0=half, x1=SIZE)
    boxes = {"target": left_boxes[0], "distractor": left_boxes[1], "decider": right_box}
    kinds = {"target": target_shape, "distractor": distractor_shape, "decider": decider_shape}

    image = np.zeros((SIZE, SIZE), dtype=np.float32)
    shapes = {}
    for role in ROLES:
        mask = _draw(kinds[role], boxes[role])
        intensity = rng.integers(_MIN_INTENSITY, _MAX_INTENSITY + 1) / 255.0
        image[mask] = intensity
        shapes[role] = mask
    return TestnetSample(
        image=image,
        segment=shapes["target"].copy(),
        shapes=shapes,
        decider_shape=decider_shape,
    )


def generate(count: int, *, seed: int) -> Iterator[TestnetSample]:
    """Yield `count` testnet samples of the dataset given by `seed`.

    Parameters
    ----------
    count : int
        Number of samples.
    seed : int
        Seed of the dataset; the same seed gives the same samples.

    Yields
    ------
    TestnetSample
    """
    if count < 0:
        raise OnnxplainError(f"count must be non-negative, got {count}")
    for index in range(count):
        yield make_sample(seed, index)


def write_dataset(out_dir: str | Path, count: int, *, seed: int) -> Path:
    """Write `count` samples as PNG files in the dataset layout that onnxplain reads.

    The layout, one file name per sample (``000000.png``, ``000001.png``...) in parallel folders::

        images/000000.png             8-bit grayscale image
        segments/000000.png           ground-truth segment, 0 or 255
        shapes/target/000000.png      one 0/255 mask per role
        shapes/decider/000000.png
        shapes/distractor/000000.png
        samples.csv                   name, decider_shape, seed, index

    Parameters
    ----------
    out_dir : str or Path
        Folder to write into; created if needed.
    count : int
        Number of samples.
    seed : int
        Seed of the dataset.

    Returns
    -------
    Path
        The folder written.
    """
    out = Path(out_dir)
    folders = [out / "images", out / "segments"] + [out / "shapes" / role for role in ROLES]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, sample in enumerate(generate(count, seed=seed)):
        name = f"{index:06d}.png"
        io.save_png(np.round(sample.image * 255).astype(np.uint8), out / "images" / name)
        io.save_png(sample.segment, out / "segments" / name)
        for role in ROLES:
            io.save_png(sample.shapes[role], out / "shapes" / role / name)
        rows.append((name, sample.decider_shape, seed, index))
    write_index(out, rows)
    return out


def write_index(out: Path, rows: list[tuple[str, str, int, int]]) -> None:
    """Write a dataset's ``samples.csv``: name, decider_shape, seed and index of each sample."""
    with open(out / "samples.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("name", "decider_shape", "seed", "index"))
        writer.writerows(rows)


def read_sample(folder: str | Path, name: str) -> TestnetSample:
    """Read sample `name` (``'000000.png'``) of a dataset written by `write_dataset`.

    Parameters
    ----------
    folder : str or Path
        The dataset folder.
    name : str
        File name of the sample in each subfolder.

    Returns
    -------
    TestnetSample
    """
    folder = Path(folder)
    image = io.read_image(folder / "images" / name, channels=1)[:, :, 0]
    shapes = {role: io.read_mask(folder / "shapes" / role / name) for role in ROLES}
    with open(folder / "samples.csv", newline="") as handle:
        deciders = {row["name"]: row["decider_shape"] for row in csv.DictReader(handle)}
    if name not in deciders:
        raise OnnxplainError(f"{folder / 'samples.csv'} does not list sample {name}")
    return TestnetSample(
        image=image,
        segment=io.read_mask(folder / "segments" / name),
        shapes=shapes,
        decider_shape=deciders[name],
    )


def _random_side(rng: np.random.Generator) -> int:
    return int(rng.integers(_MIN_SIDE, _MAX_SIDE + 1))


def _place_one(rng: np.random.Generator, *, x0: int, x1: int) -> tuple[int, int, int]:
    """Return a square box (left, top, side) that fits inside columns [x0, x1) with margins."""
    side = _random_side(rng)
    left = int(rng.integers(x0 + _MARGIN, x1 - _MARGIN - side + 1))
    top = int(rng.integers(_MARGIN, SIZE - _MARGIN - side + 1))
    return left, top, side


def _place_two(rng: np.random.Generator, *, x0: int, x1: int) -> list[tuple[int, int, int]]:
    """Return two boxes inside columns [x0, x1) that are at least `_GAP` pixels apart."""
    first = _place_one(rng, x0=x0, x1=x1)
    # Rejection sampling: the half is 240 px tall, so two 52 px boxes almost always fit at once.
    while True:
        second = _place_one(rng, x0=x0, x1=x1)
        if _apart(first, second):
            return [first, second]


def _apart(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    (ax, ay, aside), (bx, by, bside) = a, b
    return (
        ax + aside + _GAP <= bx
        or bx + bside + _GAP <= ax
        or ay + aside + _GAP <= by
        or by + bside + _GAP <= ay
    )


def _draw(kind: str, box: tuple[int, int, int]) -> np.ndarray:
    """Rasterise one shape filling `box` into a boolean mask of the image size."""
    left, top, side = box
    right, bottom = left + side - 1, top + side - 1
    canvas = Image.new("1", (SIZE, SIZE), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "circle":
        draw.ellipse((left, top, right, bottom), fill=1)
    elif kind == "square":
        # Inset so the square has about the area of the circle of the same box: area alone must not
        # tell the two apart.
        inset = round(side * 0.06)
        draw.rectangle((left + inset, top + inset, right - inset, bottom - inset), fill=1)
    elif kind == "triangle":
        draw.polygon([(left, bottom), (right, bottom), ((left + right) / 2, top)], fill=1)
    elif kind == "cross":
        bar = max(side // 4, 4)
        middle = left + (side - bar) // 2
        draw.rectangle((middle, top, middle + bar - 1, bottom), fill=1)
        middle = top + (side - bar) // 2
        draw.rectangle((left, middle, right, middle + bar - 1), fill=1)
    else:  # pragma: no cover - internal call with a fixed set of kinds
        raise ValueError(f"unknown shape kind {kind!r}")
    return np.array(canvas, dtype=bool)
