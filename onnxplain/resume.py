"""A run over a dataset's images that resumes where it stopped, and its table.

A run writes one result folder per image, ``OUT/RELATIVE/PATH/NAME.EXT/`` (the image's own file
name, so that no two images share one), each staged and renamed whole (`onnxplain.io.output_folder`),
and a table of all images, ``OUT/results.csv``, rewritten atomically after each. ``OUT/run.json``
records the run's settings: the same command started again skips the images whose folder exists
and does the rest; other settings are refused.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io as text_io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxplain import io
from onnxplain.datasets import DatasetImage
from onnxplain.errors import OnnxplainError

SETTINGS_FILE = "run.json"
TABLE_FILE = "results.csv"
_LOCK_FILE = ".onnxplain-run.lock"


@dataclass(frozen=True)
class Failure:
    """An image that could not be done, and why, in one line."""

    reason: str


@dataclass
class Summary:
    """What a dataset run did: images in the dataset, skipped as done before, done now, failed (name, reason)."""

    total: int
    skipped: int = 0
    done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


class RunFolder:
    """The top folder of a dataset run: its settings, a lock against a second run, the results, the table.

    Parameters
    ----------
    path : str or Path
        The folder, ``--out``.
    settings : dict
        Everything that decides the results (model hash and options, methods and parameters, seed,
        target...), as JSON-ready data; a run may only resume results made with the same.
    inputs : iterable of path
        What the run reads (the model, the dataset), which the folder must not hold.
    """

    def __init__(self, path: str | Path, settings: dict, *, inputs: Iterable[str | Path | None] = ()):
        self.path = Path(path)
        self.settings = json.loads(io.json_text(settings))  # as it reads back: tuples as lists, paths as text
        self.inputs = [Path(p) for p in inputs if p is not None]
        self.rows: dict[str, dict] = {}

    @contextlib.contextmanager
    def open(self) -> Iterator[RunFolder]:
        """Check the folder, lock it, then record the settings or check them against those recorded, and
        delete what a killed run left half-written. The lock ends with the block (or the process)."""
        check_run_folder(self.path, self.inputs)
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / _LOCK_FILE, "a") as lock:
            _lock(lock, self.path)
            recorded = self.path / SETTINGS_FILE
            if recorded.is_file():
                self._check_settings(recorded)
            else:
                io.save_json({"onnxplain": _version(), "created": _now(), "settings": self.settings}, recorded)
            io.remove_leftovers(self.path)
            yield self

    def _check_settings(self, recorded: Path) -> None:
        try:
            earlier = json.loads(recorded.read_text())["settings"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise OnnxplainError(f"{recorded} is not readable ({error}); give another folder",
                                 parameters=("out",)) from error
        changes = _differences(earlier, self.settings)
        if changes:
            shown = "; ".join(changes[:3]) + (f" and {len(changes) - 3} more" if len(changes) > 3 else "")
            raise OnnxplainError(f"{self.path} holds a run with other settings ({shown}); rerun with the same "
                                 "settings to finish it, or give another folder", parameters=("out",))

    def result(self, image: DatasetImage) -> Path:
        """The result folder of `image`."""
        return self.path / image.name

    def is_done(self, image: DatasetImage) -> bool:
        """Whether `image` has its whole result: a folder only appears once renamed whole."""
        return io.is_result_folder(self.result(image))

    def write_table(self, order: list[DatasetImage]) -> Path:
        """Write ``results.csv`` (one row per image with a row, in dataset order) atomically."""
        rows = [self.rows[image.name] for image in order if image.name in self.rows]
        columns: dict[str, None] = dict.fromkeys(("image", "status", "result", "error"))
        for row in rows:
            columns.update(dict.fromkeys(row))
        buffer = text_io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return io.save_text(buffer.getvalue(), self.path / TABLE_FILE)


def run(
    images: list[DatasetImage],
    folder: RunFolder,
    *,
    read: Callable[[DatasetImage], Any],
    results: Callable[[Iterable[tuple[str, Any]]], Iterator[tuple[str, Any]]],
    write: Callable[[Any, Path, DatasetImage], None],
    describe: Callable[[Path], dict],
    progress: Callable[[int], None] | None = None,
    on_failure: Callable[[str, str], None] | None = None,
) -> Summary:
    """Do every image of `images` that `folder` has no result of, writing each result whole as it comes.

    Parameters
    ----------
    images : list of DatasetImage
        The dataset.
    folder : RunFolder
        The opened run folder.
    read : callable
        ``read(image) -> payload``, on this process; an `OnnxplainError` makes the image a failure.
    results : callable
        ``results(pairs) -> pairs``: turns ``(name, payload or Failure)`` into ``(name, result or Failure)``,
        in any order (an engine's `run`).
    write : callable
        ``write(result, staging, image)`` writes one image's files into its staging folder.
    describe : callable
        ``describe(result folder) -> dict``: the image's columns in the table, read from its folder.
    progress : callable, optional
        Called with 1 after each image done or failed.
    on_failure : callable, optional
        Called with the image's name and the reason when it fails.

    Returns
    -------
    Summary
    """
    summary = Summary(total=len(images))
    by_name = {image.name: image for image in images}
    pending = []
    for image in images:
        if folder.is_done(image):
            folder.rows[image.name] = _done_row(folder, image, describe)
            summary.skipped += 1
        else:
            pending.append(image)

    def payloads() -> Iterator[tuple[str, Any]]:
        for image in pending:
            try:
                yield image.name, read(image)
            except OnnxplainError as error:
                yield image.name, Failure(str(error))

    try:
        for name, outcome in results(payloads()):
            image = by_name[name]
            if not isinstance(outcome, Failure):
                try:
                    with io.output_folder(folder.result(image), inputs=[image.path]) as staging:
                        write(outcome, staging, image)
                except OnnxplainError as error:
                    outcome = Failure(str(error))
            if isinstance(outcome, Failure):
                folder.rows[name] = {"image": name, "status": "failed", "result": "", "error": outcome.reason}
                summary.failed.append((name, outcome.reason))
                if on_failure is not None:
                    on_failure(name, outcome.reason)
            else:
                folder.rows[name] = _done_row(folder, image, describe)
                summary.done += 1
            folder.write_table(images)
            if progress is not None:
                progress(1)
    finally:
        folder.write_table(images)  # whole up to here, even when interrupted
    return summary


def _done_row(folder: RunFolder, image: DatasetImage, describe: Callable[[Path], dict]) -> dict:
    return {"image": image.name, "status": "done", "result": image.name, "error": "",
            **describe(folder.result(image))}


def check_run_folder(path: Path, inputs: list[Path]) -> None:
    """Refuse an output that a dataset run cannot use, before any work, with the fix."""
    resolved = path.resolve()
    if resolved.exists() and not resolved.is_dir():
        raise OnnxplainError(f"the output {path} is a file, not a folder; give a folder", parameters=("out",))
    here = Path.cwd().resolve()
    if resolved == here or resolved in here.parents:
        raise OnnxplainError(f"the output folder {path} is the current folder or holds it; give a new folder",
                             parameters=("out",))
    for given in inputs:
        given = given.resolve()
        if given == resolved or resolved in given.parents:
            raise OnnxplainError(f"the output folder {path} holds {given}, which this run reads; give another "
                                 "folder", parameters=("out",))
        if given.is_dir() and given in resolved.parents:
            raise OnnxplainError(f"the output folder {path} is inside {given}, which this run reads; give a "
                                 "folder outside it", parameters=("out",))
    if resolved.is_dir() and not (resolved / SETTINGS_FILE).is_file() and any(resolved.iterdir()):
        raise OnnxplainError(f"the output folder {path} holds files that are not a dataset run of onnxplain; "
                             "give a new or empty folder", parameters=("out",))


def _lock(handle: Any, path: Path) -> None:
    """Hold an exclusive lock on `handle` or refuse: two runs in one folder would delete each other's work."""
    try:
        import fcntl
    except ImportError:  # no advisory locks here (Windows): one run at a time is the user's to keep
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OnnxplainError(f"another run is writing into {path}; wait for it to end, or give another folder",
                             parameters=("out",)) from None


def _differences(earlier: Any, now: Any, where: str = "") -> list[str]:
    """Where two JSON values differ, as ``key: earlier -> now`` lines, keys dotted."""
    if isinstance(earlier, dict) and isinstance(now, dict):
        found = []
        for key in sorted(set(earlier) | set(now), key=str):
            inner = f"{where}.{key}" if where else str(key)
            found += _differences(earlier.get(key, "(none)"), now.get(key, "(none)"), inner)
        return found
    return [] if earlier == now else [f"{where or 'settings'}: {json.dumps(earlier)} -> {json.dumps(now)}"]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _version() -> str | None:
    from onnxplain.attribution import _version as version

    return version("onnxplain")
