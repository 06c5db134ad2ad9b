"""What ``explain --dataset`` and ``evaluate --dataset`` share: the engine options and the run over images."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from onnxplain import datasets, resume
from onnxplain.cli.common import open_model, progress_bar
from onnxplain.engines import ENGINES, make_engine
from onnxplain.errors import OnnxplainError
from onnxplain.model import OnnxModel


def engine_options(command: Callable) -> Callable:
    """Add the options that say where a dataset's images are worked on."""
    options = [
        click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
                     help="With --dataset: local (this process, no setup) or ray (spread over a Ray cluster; "
                          'pip install "onnxplain[ray]").'),
        click.option("--address", default=None,
                     help="With --engine ray: an existing cluster, HOST:PORT or ray://HOST:PORT [default: start a "
                          "local Ray]."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="With --engine ray: how many workers, each with one model [default: one per GPU, or "
                          "one per CPU without GPUs]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def check_single_image(engine: str, address: str | None, workers: int | None) -> None:
    """Refuse engine options on a single image, where they would do nothing."""
    if engine != "local" or address is not None or workers is not None:
        raise click.UsageError("--engine, --address and --workers spread a --dataset's images; give --dataset DIR "
                               "or leave them out")


def run_dataset(
    dataset: Path,
    out: Path,
    *,
    model: Any,
    model_path: Path,
    model_settings: dict,
    settings: dict,
    work: Callable[[Any, Any], Any],
    read: Callable[[datasets.DatasetImage], Any] | None = None,
    write: Callable[[Any, Path, datasets.DatasetImage], None],
    describe: Callable[[Path], dict],
    engine: str,
    address: str | None,
    workers: int | None,
) -> tuple[resume.Summary, list[datasets.DatasetImage], resume.RunFolder]:
    """Run `work` on every image of `dataset` not done yet in `out`, with a progress bar over images.

    `read` makes an image's payload for `work` (the image as the model takes it, with its segment
    and regions, when omitted); `write` writes what `work` returned into the image's staging folder.

    The folder is checked before the engine starts, and locked and its settings checked before any
    image is worked on. An interruption keeps every finished result and says how to go on.
    """
    images = datasets.find_images(dataset)
    folder = resume.RunFolder(out, {**settings, "model": {"sha256": model.sha256, "options": model_settings}},
                                inputs=(model_path, images[0].root))
    resume.check_run_folder(folder.path, folder.inputs)  # before a Ray start, which takes seconds
    channels = model.input.channels if model.input.channels in (1, 3) else None
    runner = make_engine(engine, model, model_path, functools.partial(_open_worker_model, options=model_settings),
                         address=address, workers=workers)
    try:
        with folder.open():
            before = sum(folder.is_done(image) for image in images)
            label = f"images on {runner.workers} {runner.name} worker(s)" + (f", {before} done before" if before
                                                                            else "")
            with progress_bar(len(images) - before, label) as update:
                summary = resume.run(
                    images, folder, read=read or (lambda image: image.read(channels=channels)),
                    results=functools.partial(runner.run, work), write=write, describe=describe, progress=update,
                    on_failure=lambda name, reason: click.echo(f"\nFailed: {name}: {reason}", err=True))
    except KeyboardInterrupt:
        done = sum(1 for row in folder.rows.values() if row["status"] == "done")
        raise OnnxplainError(f"interrupted; {done} of {len(images)} results are whole in {out}: run the same "
                             "command again to do the rest") from None
    finally:
        runner.close()
    return summary, images, folder


def _open_worker_model(path: Path, threads: int, *, options: dict) -> OnnxModel:
    """A Ray worker's model: the run's options, with the worker's share of the CPUs unless --threads is given."""
    return open_model(path, {**options, "threads": options.get("threads") or threads})


def report(summary: resume.Summary, out: Path, verb: str) -> None:
    """Print the summary line; exit with 1 when any image failed."""
    failed = f", {len(summary.failed)} failed (reasons in {out / resume.TABLE_FILE})" if summary.failed else ""
    click.echo(f"{summary.total} images: {summary.done} {verb} now, {summary.skipped} done before (skipped){failed}; "
               f"one folder per image and the table {resume.TABLE_FILE} in {out}")
    if summary.failed:
        raise click.exceptions.Exit(1)
