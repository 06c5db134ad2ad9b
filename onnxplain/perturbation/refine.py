"""Coarse-to-fine: a grid method's masks first on a coarse grid, then only near where the score changed.

HDM's circles and occlusion's boxes sit on a regular grid of positions. Level 0 evaluates every
`step`-th position along each axis (and each axis's last, where that stops more than half a step
short of it, so that the far edge is covered). Beside it, the grid is cut into blocks of `step`
positions along each axis, and each block is *probed* once: every mask of the block applied at
once, which hides the whole block's area. A position *changed* when its value lies further from the
unperturbed image's than `tolerance` times the largest such change seen so far; a block changed when
its probe did.

Each level then evaluates the positions of its grid next to a changed position (at most one of its
steps away along every axis), again and again while new ones qualify, so that it follows a changed
region wherever it leads; then the step halves, down to 1. A changed block none of whose evaluated
positions changed is evaluated on each finer grid until one does: a decisive region smaller than
the coarse spacing would otherwise go unseen (testnet sample 2 has one, between the coarse circles),
and the probes are what finds it. The positions that do not move the output stay at the coarse grid;
the map is aggregated from every evaluated position as it would be from the whole grid, and the
probes only steer. Nothing is random: the positions depend only on the values, not on how they were
batched.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from onnxplain.errors import OnnxplainError
from onnxplain.perturbation.masks import MaskBatch, MaskSource


def check_refine(refine: float | None, refine_step: int) -> None:
    """Raise `OnnxplainError` for a tolerance outside [0, 1) or a step below 2."""
    if refine is not None and not 0 <= refine < 1:
        raise OnnxplainError(f"refine is a tolerance in [0, 1), a share of the largest change such as 0.1; "
                             f"got {refine}", parameters=("refine",))
    if refine_step < 2:
        raise OnnxplainError(f"refine_step is the coarse grid's step in positions, at least 2; got {refine_step}",
                             parameters=("refine_step",))


def block_shape(grid: tuple[int, ...], step: int) -> tuple[int, ...]:
    """Blocks along each axis when a grid is cut into blocks of `step` positions (one probe each)."""
    return tuple(math.ceil(side / step) for side in grid)


class CoarseToFine:
    """Which positions of a grid to evaluate, level by level.

    Use: probe each of ``plan.blocks()`` (all its masks at once) and give their changes to `probed`;
    then ``indices = plan.first()``, evaluate them, ``indices = plan.next(indices, changes)``, and so
    on until `next` returns no index.

    Parameters
    ----------
    grid : tuple of int
        Positions along each axis; mask ``i`` sits at ``numpy.unravel_index(i, grid)``.
    tolerance : float
        A position's change counts when it exceeds this share of the largest change seen so far.
    step : int
        Level 0 takes every `step`-th position along each axis, and blocks are `step` positions wide;
        each further level halves the step.

    Examples
    --------
    >>> plan = CoarseToFine((5, 5), tolerance=0.5, step=2)
    >>> [block.tolist() for block in plan.blocks()[:5]]
    [[0, 1, 5, 6], [2, 3, 7, 8], [4, 9], [10, 11, 15, 16], [12, 13, 17, 18]]
    >>> plan.probed([0, 0, 0, 0, 1.0, 0, 0, 0, 0])  # hiding the fifth block moves the output
    >>> first = plan.first()
    >>> first.tolist()
    [0, 2, 4, 10, 12, 14, 20, 22, 24]
    >>> plan.next(first, [0] * 9).tolist()  # no coarse position does: the rest of that block is evaluated
    [13, 17, 18]
    >>> plan.next([13, 17, 18], [0, 0, 0.8]).tolist()  # position 18 does: its neighbours not yet seen
    [19, 23]
    >>> plan.next([19, 23], [0, 0]).tolist(), plan.record()["passes"]  # 14 positions and 9 probes
    ([], 23)
    """

    def __init__(self, grid: tuple[int, ...], *, tolerance: float, step: int):
        self.grid = tuple(int(side) for side in grid)
        self.tolerance = tolerance
        self.steps = [step]
        while self.steps[-1] > 1:
            self.steps.append(self.steps[-1] // 2)
        self.evaluated = np.zeros(self.grid, bool)
        self.change = np.zeros(self.grid)
        self.level = 0
        self.counts = [0] * len(self.steps)  # positions evaluated at each level
        self.rounds = [0] * len(self.steps)  # times each level came back for more
        self.block_of = np.ravel_multi_index(tuple(axis // step for axis in np.indices(self.grid)),
                                             block_shape(self.grid, step))
        self.probe_change: np.ndarray | None = None

    def blocks(self) -> list[np.ndarray]:
        """Flat indices of each block's positions, block by block: one probe hides them all at once."""
        order = np.argsort(self.block_of, axis=None, kind="stable")
        return np.split(order, np.cumsum(np.bincount(self.block_of.ravel()))[:-1])

    def probed(self, changes: np.ndarray) -> None:
        """Record each block's probe change (as `blocks` orders them), before the first `next`."""
        self.probe_change = np.abs(np.asarray(changes, np.float64))

    def _lattice(self, step: int) -> np.ndarray:
        """Positions whose every coordinate is a multiple of `step`, or its axis's last where the
        multiples stop more than half a step short of it (so that the far edge is not left out)."""
        chosen = np.ones(self.grid, bool)
        for axis, side in enumerate(self.grid):
            on = np.arange(side) % step == 0
            on[-1] |= (side - 1) % step > step / 2
            chosen &= np.expand_dims(on, tuple(a for a in range(len(self.grid)) if a != axis))
        return chosen

    def first(self) -> np.ndarray:
        """Flat indices of level 0, in ascending order."""
        return self._take(self._lattice(self.steps[0]))

    def next(self, indices: np.ndarray, changes: np.ndarray) -> np.ndarray:
        """Record the `changes` of the positions just evaluated; flat indices to evaluate next (empty: done)."""
        if self.probe_change is None:
            raise ValueError("the blocks' probes are recorded (`probed`) before the first `next`")
        self.change.ravel()[np.asarray(indices, np.intp)] = np.abs(np.asarray(changes, np.float64))
        # Where no single position moved the output, the probes set the scale: a decisive region
        # between the coarse positions shows only in its block's probe.
        largest = self.change.max(initial=0.0) or self.probe_change.max(initial=0.0)
        if largest == 0:
            return np.empty(0, np.intp)  # not even a whole block hidden at once moves the output
        changed = self.evaluated & (self.change > self.tolerance * largest)
        explained = np.bincount(self.block_of[changed], minlength=len(self.probe_change)) > 0
        unexplained = ((self.probe_change > self.tolerance * largest) & ~explained)[self.block_of]
        while self.level < len(self.steps):
            step = self.steps[self.level]
            near = ndimage.binary_dilation(changed, structure=np.ones((2 * step + 1,) * len(self.grid), bool))
            new = self._lattice(step) & (near | unexplained) & ~self.evaluated
            if new.any():
                return self._take(new)
            self.level += 1
        return np.empty(0, np.intp)

    def _take(self, chosen: np.ndarray) -> np.ndarray:
        self.evaluated |= chosen
        indices = np.flatnonzero(chosen)
        self.counts[self.level] += len(indices)
        self.rounds[self.level] += 1
        return indices

    def record(self) -> dict:
        """What the attribution's record keeps: positions evaluated of the grid's, and each level's."""
        total = math.prod(self.grid)
        used = int(self.evaluated.sum())
        probes = 0 if self.probe_change is None else len(self.probe_change)
        return {"rule": "coarse-to-fine", "target": self.tolerance, "masks_used": used, "masks_available": total,
                "probes": probes, "passes": used + probes,
                "levels": [{"step": step, "positions": count, "rounds": rounds}
                           for step, count, rounds in zip(self.steps, self.counts, self.rounds, strict=True)],
                "check": f"refined next to positions whose change exceeds {self.tolerance} of the largest"}


class SubsetMasks(MaskSource):
    """Some masks of another source, in a given order: the positions a coarse-to-fine run evaluated.

    Its arrays are the parent's, with each per-mask array (one row per mask) cut to these masks, and
    ``evaluated``: the index of each mask in the parent.

    Parameters
    ----------
    parent : MaskSource
        The whole grid.
    indices : ndarray of int
        Masks of `parent`, in the order this source gives them.
    """

    def __init__(self, parent: MaskSource, indices: np.ndarray):
        super().__init__(parent.spatial)
        self.parent = parent
        self.indices = np.asarray(indices, np.intp)
        self.features = parent.features

    def __len__(self) -> int:
        return len(self.indices)

    def _masks(self, start: int, stop: int) -> MaskBatch:
        chosen = self.indices[start:stop]
        # Runs of consecutive indices are made together, as the parent makes them best.
        runs = np.split(chosen, np.flatnonzero(np.diff(chosen) != 1) + 1) if len(chosen) else []
        made = [self.parent.batch(int(run[0]), int(run[-1]) + 1) for run in runs]
        masks = np.concatenate([m.masks for m in made]) if made else np.ones((0, *self.spatial), np.float32)
        coalitions = None if not made or made[0].coalitions is None else np.concatenate([m.coalitions for m in made])
        return MaskBatch(start, masks, coalitions)

    def arrays(self) -> dict[str, np.ndarray]:
        total = len(self.parent)
        own = {name: array[self.indices] if array.ndim and len(array) == total else array
               for name, array in self.parent.arrays().items()}
        return {**own, "evaluated": self.indices.astype(np.int32)}
