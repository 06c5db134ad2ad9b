"""Explanations the explorer runs in the background: checked when asked for, then queued, with
progress, cancellable, and kept per user.

A request is checked at once, in the request (the model loads, the image is read, the method and
its parameters are made, the target is placed, and the model runs once on the image), so that
every mistake is answered with a 4xx before anything is queued. The run itself goes to a pool of
worker threads: a long run blocks neither the page nor other users. Cancelling sets a flag that
the run's progress callback reads after every batch, so a cancelled run stops within one batch.
A request equal to one already answered (same model file, image, method, parameters, target and
seed) reuses its result. Models are opened once per file and shared by the runs (onnxruntime's
sessions run concurrently).
"""

from __future__ import annotations

import base64
import hashlib
import io as bytes_io
import json
import logging
import secrets
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from onnxplain import captions, io
from onnxplain.api import create_method
from onnxplain.attribution import Attribution
from onnxplain.errors import OnnxplainError
from onnxplain.method import Baseline, Method, make_baseline
from onnxplain.model import OnnxModel
from onnxplain.parameters import accepted_parameters, parse_parameters
from onnxplain.registry import plugins
from onnxplain.serve.store import RequestError, Workspace, check_id, new_id
from onnxplain.targets import Target

log = logging.getLogger(__name__)


class JobCancelledError(Exception):
    """Raised inside a run whose job was cancelled."""


@dataclass(frozen=True)
class JobRequest:
    """What to explain, as the page sends it.

    Attributes
    ----------
    model, image : str
        Ids from the workspace's lists.
    method : str
        An installed method.
    parameters : dict of str to str
        The method's parameters as text, read as ``-p NAME=VALUE`` is on the command line.
    class_index : int, optional
        The class; the model's default when None.
    output : str, optional
        The model output; the model's default when None.
    target : dict
        ``{"kind": "class"}``, ``{"kind": "pixels", "points": [[x, y], ...]}``,
        ``{"kind": "box", "box": [x0, y0, x1, y1]}`` or ``{"kind": "mask", "png": BASE64}``.
    seed : int
        Seed of the method's random choices.
    """

    model: str
    image: str
    method: str
    parameters: dict[str, str] = field(default_factory=dict)
    class_index: int | None = None
    output: str | None = None
    target: dict = field(default_factory=lambda: {"kind": "class"})
    seed: int = 0

    @classmethod
    def from_json(cls, body: Any) -> JobRequest:
        """Read a request body, or a 400 saying which field is wrong."""
        if not isinstance(body, dict):
            raise RequestError(400, "send a JSON object with model, image and method")
        try:
            request = cls(model=str(body["model"]), image=str(body["image"]), method=str(body["method"]),
                          parameters={str(k): str(v) for k, v in dict(body.get("parameters") or {}).items()},
                          class_index=None if body.get("class_index") in (None, "") else int(body["class_index"]),
                          output=None if body.get("output") in (None, "") else str(body["output"]),
                          target=dict(body.get("target") or {"kind": "class"}), seed=int(body.get("seed", 0)))
        except KeyError as error:
            raise RequestError(400, f"the request lacks {error.args[0]!r}; send model, image and method") from None
        except (TypeError, ValueError) as error:
            raise RequestError(400, f"the request has a field of the wrong type ({error})") from None
        return request

    def key(self, model_file: Path) -> str:
        """Equal for requests whose result is the same: the model file's content, not its id, counts."""
        text = json.dumps({**self.__dict__, "model": _file_digest(model_file)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Job:
    """One explanation: its owner, its state and its result folder."""

    id: str
    share: str
    owner: str
    request: JobRequest
    folder: Path
    status: str = "queued"  # queued, running, done, failed, cancelled
    done: int = 0
    total: int = 0
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    key: str = ""
    caption: str = ""  # what the map's values are (`onnxplain.captions.map_label`)

    def describe(self) -> dict:
        """The job as the page reads it."""
        files, shape = [], None
        if self.status == "done":
            files = sorted(p.name for p in self.folder.iterdir() if not p.name.startswith("."))  # not the marker
            shape = list(np.load(self.folder / "saliency.npy", mmap_mode="r").shape)
        return {"id": self.id, "share": self.share, "status": self.status, "done": self.done, "total": self.total,
                "error": self.error, "method": self.request.method, "request": self.request.__dict__,
                "files": files, "shape": shape, "caption": self.caption,
                "seconds": round((self.finished or time.time()) - self.started, 3)}


@dataclass
class _Prepared:
    model: OnnxModel
    method: Method
    target: Target
    baseline: Baseline


class Jobs:
    """The explorer's jobs: submitted, run by `workers` threads, found again by id.

    Parameters
    ----------
    workspace : Workspace
        Where models, images and results are.
    workers : int
        Explanations run at once.
    """

    def __init__(self, workspace: Workspace, *, workers: int = 2):
        self.workspace = workspace
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="onnxplain-job")
        self.jobs: dict[str, Job] = {}
        self.answered: dict[str, Job] = {}  # finished jobs by request key
        self.lock = threading.Lock()
        self._models: dict[tuple[str, int, float], OnnxModel] = {}

    def model(self, path: Path) -> OnnxModel:
        """The model of `path`, opened once (per file content: a changed file is opened again)."""
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime)
        with self.lock:
            if key not in self._models:
                self._models[key] = OnnxModel(path)
            return self._models[key]

    def submit(self, user: str, request: JobRequest) -> Job:
        """Check `request` now and queue its run; a 400 for anything wrong with it."""
        model_file = self.workspace.model_path(user, request.model)
        key = request.key(model_file)
        job_id = new_id()
        job = Job(id=job_id, share=secrets.token_urlsafe(12), owner=user, request=request, key=key,
                  folder=self.workspace.user_folder(user, "jobs") / job_id)
        with self.lock:
            earlier = self.answered.get(key)
        if earlier is not None and (earlier.folder / "explanation.json").is_file():
            shutil.copytree(earlier.folder, job.folder)
            job.status, job.done, job.total, job.finished = "done", earlier.total, earlier.total, time.time()
            job.caption = earlier.caption
        else:
            try:
                prepared = self._prepare(user, request, model_file)
            except OnnxplainError as error:
                raise RequestError(400, str(error)) from None
            job.total = prepared.method.count(prepared.baseline.image) or 0
            self.executor.submit(self._run, job, prepared)
        with self.lock:
            self.jobs[job.id] = job
        return job

    def reopen(self, user: str, folder: Path) -> Job:
        """A finished job of a result folder saved earlier, moved into place once it loads."""
        result = Attribution.load(folder)
        job_id = new_id()
        request = JobRequest(model="", image="", method=result.method)
        job = Job(id=job_id, share=secrets.token_urlsafe(12), owner=user, request=request, status="done",
                  folder=self.workspace.user_folder(user, "jobs") / job_id, finished=time.time(),
                  caption=captions.map_label(result), done=len(result.values), total=len(result.values))
        folder.rename(job.folder)
        with self.lock:
            self.jobs[job.id] = job
        return job

    def get(self, job_id: str, user: str, share: str | None = None) -> Job:
        """Job `job_id`, for its owner or a holder of its share key; a 404 for anyone else."""
        job = self.jobs.get(check_id(job_id, "result"))
        if job is None or (job.owner != user and not secrets.compare_digest(share or "", job.share)):
            raise RequestError(404, f"no result {job_id!r} for you; ask its owner for the shared link")
        return job

    def cancel(self, job: Job) -> None:
        """Stop `job` at its next batch (or before it starts)."""
        job.cancel.set()

    def shutdown(self) -> None:
        """Cancel every job and wait for the workers."""
        for job in list(self.jobs.values()):
            job.cancel.set()
        self.executor.shutdown(wait=True, cancel_futures=True)

    def _prepare(self, user: str, request: JobRequest, model_file: Path) -> _Prepared:
        if request.method not in plugins.names("method"):
            raise RequestError(400, f"no method {request.method!r}; choose one of {', '.join(plugins.names('method'))}")
        model = self.model(model_file)
        image = io.read_image(self.workspace.image_path(user, request.image),
                              channels=model.input.channels if model.input.channels in (1, 3) else None)
        method_class = plugins.get("method", request.method)
        parameters = parse_parameters(method_class, [f"{k}={v}" for k, v in request.parameters.items()])
        seed = request.seed if "seed" in accepted_parameters(method_class) else None  # some methods draw nothing
        method = create_method(request.method, seed=seed, **parameters)
        target = _target(request.target, image.shape[:2]).of_class(request.class_index, request.output)
        baseline = make_baseline(model, image, target)
        return _Prepared(model, method, target, baseline)

    def _run(self, job: Job, prepared: _Prepared) -> None:
        if job.cancel.is_set():
            job.status, job.finished = "cancelled", time.time()
            return
        job.status = "running"

        def progress(count: int) -> None:
            job.done += count
            if job.cancel.is_set():
                raise JobCancelledError

        try:
            result = prepared.method.attribute(prepared.model, prepared.baseline.image, prepared.target,
                                               baseline=prepared.baseline, batch_size=prepared.model.batch_size,
                                               progress=progress)
            with io.output_folder(job.folder) as staging:
                result.write(staging, extra={"request": job.request.__dict__})
            job.caption = captions.map_label(result)
            job.status = "done"
            with self.lock:
                self.answered[job.key] = job
        except JobCancelledError:
            job.status = "cancelled"
        except OnnxplainError as error:
            job.status, job.error = "failed", str(error)
        except Exception as error:  # a plugin's bug: the job fails, the server keeps serving
            log.exception("job %s failed", job.id)
            job.status, job.error = "failed", f"{type(error).__name__}: {error}"
        finally:
            job.finished = time.time()


def _target(spec: dict, shape: tuple[int, int]) -> Target:
    """The target of a request, checked against the image's (height, width)."""
    height, width = shape
    kind = spec.get("kind", "class")
    try:
        if kind == "class":
            return Target.whole_class()
        if kind == "pixels":
            points = [(int(x), int(y)) for x, y in spec.get("points") or []]
            if not points:
                raise RequestError(400, "click at least one pixel to explain, or explain the whole class")
            outside = [(x, y) for x, y in points if not (0 <= x < width and 0 <= y < height)]
            if outside:
                raise RequestError(400, f"pixel {outside[0]} is outside the {width}x{height} image")
            return Target.pixels(points)
        if kind == "box":
            x0, y0, x1, y1 = (int(v) for v in spec.get("box") or [])
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                raise RequestError(400, f"box ({x0}, {y0}, {x1}, {y1}) is not inside the {width}x{height} image; "
                                        "drag a box over the image")
            return Target.box(x0, y0, x1, y1)
        if kind == "mask":
            with Image.open(bytes_io.BytesIO(base64.b64decode(spec.get("png") or "", validate=True))) as picture:
                mask = np.asarray(picture.convert("L")) > 127
            if mask.shape != (height, width):
                raise RequestError(400, f"the painted region is {mask.shape[1]}x{mask.shape[0]}, the image "
                                        f"{width}x{height}")
            if not mask.any():
                raise RequestError(400, "the painted region is empty; paint over the pixels to explain")
            return Target.from_mask(mask)
    except RequestError:
        raise
    except (TypeError, ValueError, OSError) as error:
        raise RequestError(400, f"the {kind} target is malformed ({error})") from None
    raise RequestError(400, f"no target kind {kind!r}; use class, pixels, box or mask")


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()
