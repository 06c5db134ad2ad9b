"""Where a dataset's images are worked on: in this process, or spread over a Ray cluster.

An engine turns ``(name, payload)`` pairs into ``(name, result)`` pairs by calling
``work(model, payload)`` on a worker that holds one opened model (one onnxruntime session).
A payload that is already a `onnxplain.resume.Failure` passes through; an error of the work on
one image becomes that image's `Failure`, and the other images go on. Results come back to this
process, which writes them: no file system is shared with the workers.

Ray is an optional dependency, imported only by `RayEngine`.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from onnxplain.errors import OnnxplainError, first_line
from onnxplain.resume import Failure

ENGINES = ("local", "ray")
Work = Callable[[Any, Any], Any]
"""``work(model, payload) -> result``: one image's work on a worker's model; picklable for Ray."""


def attempt(work: Work, model: Any, payload: Any) -> Any:
    """``work(model, payload)``, or the `Failure` that says in one line why it failed."""
    if isinstance(payload, Failure):
        return payload
    try:
        return work(model, payload)
    except OnnxplainError as error:
        return Failure(str(error))
    except Exception as error:  # a bug on one image must not lose the rest of the dataset
        return Failure(f"unexpected {type(error).__name__}: {first_line(error)}")


class LocalEngine:
    """Every image in this process, one after the other, on one model.

    Parameters
    ----------
    model : Segmenter
        The opened model.
    """

    name = "local"

    def __init__(self, model: Any):
        self.model = model
        self.workers = 1

    def run(self, work: Work, pairs: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
        """``(name, result or Failure)`` for each ``(name, payload)``, in order."""
        for name, payload in pairs:
            yield name, attempt(work, self.model, payload)

    def close(self) -> None:
        """Nothing to release."""


class RayEngine:
    """Images spread over the workers of a Ray cluster, each worker an actor holding one model.

    One worker per GPU where the cluster has GPUs, else one per CPU, unless `workers` says how
    many; each worker reads the model from bytes sent to it, so no shared file system is needed.

    Parameters
    ----------
    model_path : Path
        The ONNX file.
    open_model : callable
        ``open_model(path, threads) -> model``, run once on each worker with the run's model
        options; `threads` is the worker's share of the cluster's CPUs (onnxruntime would otherwise
        give every worker all the cores of its machine); picklable.
    address : str, optional
        An existing cluster (``HOST:PORT``, ``ray://HOST:PORT`` or ``auto``); a local Ray is started
        (and stopped at the end) when omitted.
    workers : int, optional
        How many workers.
    """

    name = "ray"

    def __init__(self, model_path: Path, open_model: Callable[[Path, int], Any], *, address: str | None = None,
                 workers: int | None = None):
        try:
            import ray
        except ImportError:
            raise OnnxplainError('--engine ray needs Ray, which is not installed: pip install "onnxplain[ray]"') \
                from None
        self._ray = ray
        _check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                     configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise OnnxplainError(f"cannot connect to the Ray cluster at {address}: {first_line(error)}; check "
                                 "--address, or leave it out to start a local Ray") from error
        try:
            self._actors = self._start(model_path, open_model, workers)
        except BaseException:
            ray.shutdown()
            raise
        self.workers = len(self._actors)

    def _start(self, model_path: Path, open_model: Callable[[Path, int], Any], workers: int | None) -> list:
        ray = self._ray
        resources = ray.cluster_resources()
        gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 1))
        count = workers or int(gpus or cpus) or 1
        # Each worker asks for its share, at most a whole device: more workers than devices still start.
        options = {"num_gpus": min(1.0, gpus / count)} if gpus else {}
        options["num_cpus"] = min(1.0, cpus / count)
        model = ray.put(Path(model_path).read_bytes())
        actor = ray.remote(_Worker).options(**options)
        threads = max(1, int(cpus // count))
        actors = [actor.remote(model, Path(model_path).name, open_model, threads) for _ in range(count)]
        try:
            ray.get([a.ready.remote() for a in actors], timeout=300)
        except ray.exceptions.GetTimeoutError:
            raise OnnxplainError(f"the {count} Ray workers did not start within 5 minutes; the cluster may lack "
                                 "the CPUs or GPUs they ask for: give fewer --workers") from None
        except ray.exceptions.RayError as error:
            cause = getattr(error, "cause", None) or error
            raise OnnxplainError(f"a Ray worker could not open the model: {first_line(cause)}") from error
        return actors

    def run(self, work: Work, pairs: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
        """``(name, result or Failure)`` for each ``(name, payload)``, as the workers finish them.

        Each worker has at most two images in hand (one at work, one waiting), so images are read
        only as the workers are ready for them.
        """
        ray = self._ray
        work_ref = ray.put(work)
        waiting = iter(pairs)
        in_flight: dict[Any, tuple[str, Any]] = {}
        idle = [actor for actor in self._actors for _ in range(2)]
        while True:
            while idle:
                pair = next(waiting, None)
                if pair is None:
                    break
                name, payload = pair
                if isinstance(payload, Failure):  # nothing to send
                    yield name, payload
                    continue
                actor = idle.pop(0)
                in_flight[actor.run.remote(work_ref, payload)] = (name, actor)
            if not in_flight:
                return
            (finished,), _ = ray.wait(list(in_flight), num_returns=1)
            name, actor = in_flight.pop(finished)
            try:
                yield name, ray.get(finished)
            except ray.exceptions.RayError as error:
                yield name, Failure(f"the Ray worker failed: {first_line(getattr(error, 'cause', None) or error)}")
            idle.append(actor)

    def close(self) -> None:
        """Stop the workers, and the local Ray if this engine started it."""
        for actor in self._actors:
            self._ray.kill(actor)
        self._ray.shutdown()


class _Worker:
    """A Ray actor: one model, opened once from the bytes the driver sent."""

    def __init__(self, model: bytes, name: str, open_model: Callable[[Path, int], Any], threads: int):
        folder = Path(tempfile.mkdtemp(prefix="onnxplain-worker-"))
        path = folder / f"{hashlib.sha256(model).hexdigest()[:16]}-{name}"
        path.write_bytes(model)
        self.model = open_model(path, threads)

    def ready(self) -> bool:
        return True

    def run(self, work: Work, payload: Any) -> Any:
        return attempt(work, self.model, payload)


def _check_reachable(address: str | None) -> None:
    """Fail in seconds, not minutes, when nothing listens at a ``HOST:PORT`` address."""
    if address is None or address == "auto":
        return
    where = address.removeprefix("ray://")
    host, separator, port = where.rpartition(":")
    if not separator or not port.isdigit():
        raise OnnxplainError(f"--address {address!r} is not HOST:PORT, ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass
    except OSError as error:
        raise OnnxplainError(f"cannot reach the Ray cluster at {address} ({error.strerror or error}); check "
                             "--address, or leave it out to start a local Ray") from None


def make_engine(name: str, model: Any, model_path: Path, open_model: Callable[[Path, int], Any], *,
                address: str | None = None, workers: int | None = None) -> LocalEngine | RayEngine:
    """The engine called `name` (one of `ENGINES`).

    Parameters
    ----------
    name : {'local', 'ray'}
        Which engine.
    model : Segmenter
        The model opened in this process; the local engine works on it.
    model_path : Path
        Its file, sent to Ray's workers.
    open_model : callable
        How a Ray worker opens the model file (picklable).
    address : str, optional
        Ray cluster address (``--address``); only for Ray.
    workers : int, optional
        How many workers; only for Ray (the local engine has one).
    """
    if name == "local":
        if address is not None or (workers or 1) > 1:
            raise OnnxplainError("--address and --workers are for --engine ray; add it, or leave them out")
        return LocalEngine(model)
    if name == "ray":
        return RayEngine(model_path, open_model, address=address, workers=workers)
    raise OnnxplainError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
