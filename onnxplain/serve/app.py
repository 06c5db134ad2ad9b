"""The explorer's web app: a page and the HTTP API behind it (Starlette).

Every user gets a random id in a cookie on the first request; uploads and results are kept under
it, and a result is served to another browser only with the result's share key (the link the page
offers). Every refusal is a JSON ``{"error": "..."}`` with a 4xx status, one line saying what to do.
"""

from __future__ import annotations

import base64
import contextlib
import io as bytes_io
import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from onnxplain import io
from onnxplain.errors import OnnxplainError
from onnxplain.layers import list_layers
from onnxplain.method import make_baseline
from onnxplain.registry import plugin_parameters, plugins
from onnxplain.serve.jobs import JobRequest, Jobs
from onnxplain.serve.store import Limits, RequestError, Workspace, check_id, display_name, new_id, too_large
from onnxplain.targets import Target

COOKIE = "onnxplain_user"
STATIC = Path(__file__).resolve().parent / "static"
_SIMPLE = (bool, int, float, str, type(None))
_RESULT_FILE = re.compile(r"[a-z_]+\.(npy|png|json)")  # the files a result folder holds


def create_app(root: Path, *, models: Path | None = None, limits: Limits | None = None, workers: int = 2) -> Starlette:
    """The explorer's app, keeping its files in `root` and offering the models of `models`.

    Parameters
    ----------
    root : Path
        Folder for uploads and results.
    models : Path, optional
        Folder of ``.onnx`` models to offer beside the bundled testnet model.
    limits : Limits, optional
        Largest uploads.
    workers : int
        Explanations run at once.
    """
    workspace = Workspace(root, models, limits)
    jobs = Jobs(workspace, workers=workers)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def list_models(request: Request) -> Response:
        return JSONResponse(workspace.models(_user(request)))

    async def upload_model(request: Request) -> Response:
        name, content = await _upload(request, workspace.limits.model_bytes, "model")
        return JSONResponse(workspace.save_model(_user(request), name, content), status_code=201)

    async def list_images(request: Request) -> Response:
        return JSONResponse(workspace.images(_user(request)))

    async def upload_image(request: Request) -> Response:
        name, content = await _upload(request, workspace.limits.image_bytes, "image")
        return JSONResponse(workspace.save_image(_user(request), name, content), status_code=201)

    def image_file(request: Request) -> Response:
        path = workspace.image_path(_user(request), request.path_params["image"])
        return FileResponse(path, media_type="image/png")

    def model_info(request: Request) -> Response:
        """The model's outputs and classes, and the layers an activation method can read."""
        path = workspace.model_path(_user(request), request.path_params["model"])
        model = jobs.model(path)
        layers = [layer.name for layer in list_layers(path) if layer.feature_map]
        return JSONResponse({"outputs": model.output_names, "output": model.output_name,
                             "classes": model.num_classes, "class_index": model.reader.class_index,
                             "layers": layers})

    def segment(request: Request) -> Response:
        user, query = _user(request), request.query_params
        model = jobs.model(workspace.model_path(user, query.get("model", "")))
        image = io.read_image(workspace.image_path(user, query.get("image", "")),
                              channels=model.input.channels if model.input.channels in (1, 3) else None)
        class_index = _int(query.get("class_index"), "class_index")
        goal = Target.whole_class().of_class(class_index, query.get("output") or None)
        baseline = make_baseline(model, image, goal)
        mask = baseline.output.mask[0]
        return JSONResponse({"width": int(mask.shape[1]), "height": int(mask.shape[0]),
                             "classes": model.num_classes, "mask": _png_base64(mask),
                             "pixels": int(mask.sum())})

    def list_methods(request: Request) -> Response:
        return JSONResponse(_methods())

    async def submit(request: Request) -> Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RequestError(400, "send the explanation's settings as a JSON object") from None
        job = jobs.submit(_user(request), JobRequest.from_json(body))
        return JSONResponse(job.describe(), status_code=202)

    async def reopen(request: Request) -> Response:
        """A result folder saved earlier (the zip the page downloads), shown again."""
        user = _user(request)
        name, content = await _upload(request, workspace.limits.model_bytes, "result")
        staging = workspace.user_folder(user, "jobs") / f".reopen-{new_id()}"
        try:
            _unpack_result(content, staging, workspace.limits.model_bytes, display_name(name, "the upload"))
            job = jobs.reopen(user, staging)
        except OnnxplainError as error:
            raise RequestError(400, f"{display_name(name, 'the upload')} is not a result onnxplain can read "
                                    f"({error}); upload the zip the page downloads") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return JSONResponse(job.describe(), status_code=201)

    def job_status(request: Request) -> Response:
        return JSONResponse(_job(request).describe())

    def cancel(request: Request) -> Response:
        job = _job(request, owner_only=True)
        jobs.cancel(job)
        return JSONResponse(job.describe(), status_code=202)

    def job_file(request: Request) -> Response:
        job = _job(request)
        name = request.path_params["name"]
        if job.status != "done" or not _RESULT_FILE.fullmatch(name):
            raise RequestError(404, f"no file {name!r} in this result")
        path = job.folder / name
        if not path.is_file():
            raise RequestError(404, f"no file {name!r} in this result")
        return FileResponse(path)

    def job_map(request: Request) -> Response:
        """The map as little-endian float32, row after row: what the page draws."""
        job = _done(request)
        saliency = np.load(job.folder / "saliency.npy").astype("<f4")
        return Response(saliency.tobytes(), media_type="application/octet-stream",
                        headers={"X-Shape": ",".join(map(str, saliency.shape))})

    def job_picture(request: Request) -> Response:
        """The result's own image and segment, to show a reopened result over what it explained."""
        job = _done(request)
        image = np.load(job.folder / "image.npy")
        pixels = np.clip(np.squeeze(image, axis=-1) if image.shape[-1] == 1 else image, 0, 1)
        segment = np.load(job.folder / "segment.npy")
        return JSONResponse({"width": int(segment.shape[1]), "height": int(segment.shape[0]),
                             "image": _png_base64(pixels), "mask": _png_base64(segment), "pixels": int(segment.sum())})

    def job_zip(request: Request) -> Response:
        job = _done(request)
        handle, name = tempfile.mkstemp(suffix=".zip")
        with open(handle, "wb") as file, zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(job.folder.iterdir()):
                if not path.name.startswith("."):  # the folder's own marker (`onnxplain.io.output_folder`)
                    archive.write(path, f"onnxplain-{job.id}/{path.name}")
        return FileResponse(name, media_type="application/zip", filename=f"onnxplain-{job.id}.zip",
                            background=BackgroundTask(Path(name).unlink))

    def _job(request: Request, *, owner_only: bool = False) -> Any:
        user = _user(request)
        return jobs.get(request.path_params["job"], user, None if owner_only else request.query_params.get("share"))

    def _done(request: Request) -> Any:
        job = _job(request)
        if job.status != "done":
            raise RequestError(409, f"the result is {job.status}, not done")
        return job

    async def failed(request: Request, error: Exception) -> Response:
        if isinstance(error, RequestError):
            return JSONResponse({"error": str(error)}, status_code=error.status)
        if isinstance(error, HTTPException):  # no route, or a method the route does not take
            return JSONResponse({"error": f"no such address: {request.method} {request.url.path}"},
                                status_code=error.status_code)
        return JSONResponse({"error": str(error)}, status_code=400)

    routes = [
        Route("/", page),
        Route("/api/models", list_models, methods=["GET"]),
        Route("/api/models", upload_model, methods=["POST"]),
        Route("/api/images", list_images, methods=["GET"]),
        Route("/api/images", upload_image, methods=["POST"]),
        Route("/api/images/{image}", image_file),
        Route("/api/models/{model}/info", model_info),
        Route("/api/segment", segment),
        Route("/api/results", reopen, methods=["POST"]),
        Route("/api/methods", list_methods),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs/{job}", job_status, methods=["GET"]),
        Route("/api/jobs/{job}", cancel, methods=["DELETE"]),
        Route("/api/jobs/{job}/map", job_map),
        Route("/api/jobs/{job}/result.zip", job_zip),
        Route("/api/jobs/{job}/picture", job_picture),
        Route("/api/jobs/{job}/files/{name}", job_file),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        jobs.shutdown()  # runs still going are cancelled; their folders were never renamed into place

    handlers = {RequestError: failed, OnnxplainError: failed, HTTPException: failed}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.add_middleware(_UserCookie)
    app.state.jobs, app.state.workspace = jobs, workspace
    return app


class _UserCookie:
    """Give each browser a random user id in an HttpOnly cookie, and read it into the request's scope."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookies = Request(scope).cookies
        user = cookies.get(COOKIE, "")
        fresh = not re.fullmatch(r"[A-Za-z0-9_-]{16}", user)
        if fresh:
            user = new_id()
        scope.setdefault("state", {})["user"] = user

        async def send_with_cookie(message: dict) -> None:
            if fresh and message["type"] == "http.response.start":
                value = f"{COOKIE}={user}; Path=/; HttpOnly; SameSite=Strict"
                message.setdefault("headers", []).append((b"set-cookie", value.encode()))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _user(request: Request) -> str:
    return check_id(request.state.user, "user")


async def _upload(request: Request, limit: int, what: str) -> tuple[str | None, bytes]:
    """The one file of a multipart upload, read up to `limit` bytes: (its name, its bytes)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise RequestError(413, too_large(what, int(declared), limit))
    try:
        form = await request.form(max_files=1, max_fields=4, max_part_size=limit + 1)
    except Exception as error:  # python-multipart's parse errors and Starlette's limits
        raise RequestError(400, f"send the {what} as a multipart form with one file field ({error})") from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise RequestError(400, f"send the {what} in a form field named file")
    content = await upload.read(limit + 1)
    await form.close()
    if len(content) > limit:
        raise RequestError(413, too_large(what, len(content), limit))
    return upload.filename, content


def _int(text: str | None, name: str) -> int | None:
    if text in (None, ""):
        return None
    try:
        return int(text)
    except ValueError:
        raise RequestError(400, f"{name} is a whole number, got {text!r}") from None


def _png_base64(pixels: np.ndarray) -> str:
    """A PNG of a boolean mask (white on black) or of an image in [0, 1], base64-encoded."""
    scaled = np.asarray(pixels, np.float64) * 255
    buffer = bytes_io.BytesIO()
    Image.fromarray(np.round(scaled).astype(np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _unpack_result(content: bytes, folder: Path, limit: int, label: str) -> None:
    """Write the files of a zipped result folder into `folder`.

    Only a result's own files are taken, by their last name, and written by this code: nothing in
    the archive chooses a path (no traversal, no links), and its unpacked size is capped.
    """
    try:
        archive = zipfile.ZipFile(bytes_io.BytesIO(content))
        members = [m for m in archive.infolist() if not m.is_dir() and not m.filename.endswith("/.onnxplain-result")]
    except (zipfile.BadZipFile, OSError):
        raise RequestError(400, f"{label} is not a zip file; upload the zip the page downloads") from None
    if sum(m.file_size for m in members) > limit:
        raise RequestError(413, f"{label} unpacks to more than the {limit // 2**20} MiB this explorer takes")
    names = [m.filename.rsplit("/", 1)[-1] for m in members]
    if "explanation.json" not in names or any(not _RESULT_FILE.fullmatch(n) for n in names):
        raise RequestError(400, f"{label} is not a result folder: it holds files other than a result's .npy, "
                                ".png and explanation.json, or no explanation.json")
    folder.mkdir(parents=True)
    for member, name in zip(members, names, strict=True):
        (folder / name).write_bytes(archive.read(member))


def _methods() -> list[dict]:
    """Every installed method that can be made with its defaults: name, needs and simple parameters."""
    found = []
    for name in plugins.names("method"):
        try:
            method_class = plugins.get("method", name)
            defaults = plugin_parameters(plugins.create("method", name), method_class)
        except Exception:  # a plugin that cannot be made here (say, a bridge whose framework is missing)
            continue
        simple = {key: value for key, value in defaults.items() if isinstance(value, _SIMPLE)}
        found.append({"name": name, "needs": sorted(getattr(method_class, "needs", ())), "parameters": simple})
    return found

