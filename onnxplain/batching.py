"""The one batching helper: which items go into each forward pass."""

from __future__ import annotations

import os
from collections.abc import Iterator

from onnxplain.errors import OnnxplainError

_USABLE_FRACTION = 0.8  # of the available memory: the rest stays for the model's own activations


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


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_batch_memory(batch_size: int, per_item: int, fixed: int = 0, *, what: str = "perturbed image") -> None:
    """Refuse, before running, a batch that will not fit in the memory available, with a batch size that does.

    Parameters
    ----------
    batch_size : int
        Items per batch.
    per_item : int
        Bytes one item of a batch takes (its copies along the way included).
    fixed : int
        Bytes taken whatever the batch size (running sums, say).
    what : str
        What an item is, for the message.
    """
    available = available_memory()
    if available is None:
        return
    usable = available * _USABLE_FRACTION - fixed
    if batch_size * per_item <= usable:
        return
    need = (batch_size * per_item + fixed) / 2**30
    if usable < per_item:
        raise OnnxplainError(
            f"one {what} needs about {(per_item + fixed) / 2**30:.1f} GiB, more than the "
            f"{available / 2**30:.1f} GiB of memory available; explain a smaller image (resize it)")
    raise OnnxplainError(
        f"a batch of {batch_size} {what}s needs about {need:.1f} GiB, more than the {available / 2**30:.1f} GiB "
        f"of memory available; use a batch size of {int(usable // per_item)} or less",
        parameters=("batch_size",))


def out_of_memory(batch_size: int, what: str = "perturbed image") -> OnnxplainError:
    """The error to raise for a MemoryError during batched work: a smaller batch is the fix."""
    return OnnxplainError(
        f"ran out of memory with {batch_size} {what}s per batch; use a smaller batch size "
        f"(half, {max(1, batch_size // 2)}, say), or explain a smaller image", parameters=("batch_size",))
