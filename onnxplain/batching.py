"""The one batching helper: which items go into each forward pass."""

from __future__ import annotations

from collections.abc import Iterator

from onnxplain.errors import OnnxplainError


def batches(total: int, batch_size: int) -> Iterator[tuple[int, int]]:
    """Yield ``(start, stop)`` ranges that cover ``range(total)`` in order, `batch_size` at most each.

    Parameters
    ----------
    total : int
        Number of items.
    batch_size : int
        Items per batch: perturbed images per forward pass, so memory grows linearly with it.

    Examples
    --------
    >>> list(batches(5, 2))
    [(0, 2), (2, 4), (4, 5)]
    """
    if batch_size < 1:
        raise OnnxplainError(f"batch_size must be at least 1, got {batch_size}", parameters=("batch_size",))
    for start in range(0, total, batch_size):
        yield start, min(start + batch_size, total)
