"""The explorer's files: the models and images it may read, and each user's uploads.

Nothing a request names becomes a path as it is: models and images are named by ids that this
module made (random, URL-safe) or by the names of regular files it listed itself, and every path
is checked to lie inside its folder after symbolic links are resolved, so no request reaches a
file outside the served folders.
"""

from __future__ import annotations

import io as bytes_io
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from PIL import Image, UnidentifiedImageError

from onnxplain import data
from onnxplain import io as onnxplain_io
from onnxplain.errors import OnnxplainError

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,127}")
TESTNET = "testnet"


class RequestError(Exception):
    """A request the explorer refuses: an HTTP status and a one-line message saying what to do."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """Largest uploads the explorer takes."""

    model_bytes: int = 200 * 2**20
    image_bytes: int = 20 * 2**20
    image_pixels: int = 4096 * 4096


def new_id() -> str:
    """A random id: 16 URL-safe characters, 96 bits, too many to guess."""
    return secrets.token_urlsafe(12)


def check_id(text: str, what: str) -> str:
    """`text` when it is an id this module could have made; a 404 otherwise (no hint of what exists)."""
    if not _ID.fullmatch(text or ""):
        raise RequestError(404, f"no {what} {text!r}")
    return text


def inside(folder: Path, name: str) -> Path:
    """``folder / name``, refused unless it is a regular file inside `folder`, reached through no symbolic link."""
    path = folder / name
    if path.is_symlink() or not path.resolve().is_relative_to(folder.resolve()):
        raise RequestError(403, f"{name!r} is outside the served folders")
    return path


def display_name(name: str | None, fallback: str) -> str:
    """A file name a user gave, reduced to its last part, for showing only (never a path)."""
    last = Path((name or "").replace("\\", "/")).name
    return last if _FILE_NAME.fullmatch(last) else fallback


class Workspace:
    """The models and images of the explorer: the bundled testnet, a models folder, and uploads per user.

    Parameters
    ----------
    root : Path
        Folder of the explorer's own files (uploads and results), created if needed.
    models : Path, optional
        A folder of ``.onnx`` models to offer, read only.
    limits : Limits
        Largest uploads.
    """

    def __init__(self, root: Path, models: Path | None = None, limits: Limits | None = None):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.models_folder = None if models is None else Path(models).resolve()
        if self.models_folder is not None and not self.models_folder.is_dir():
            raise OnnxplainError(f"--models {models} is not a folder; give a folder of .onnx files")
        self.limits = limits or Limits()

    def user_folder(self, user: str, kind: str) -> Path:
        """The user's folder of `kind` (models, images, jobs), created if needed."""
        folder = self.root / "users" / check_id(user, "user") / kind
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # Models -----------------------------------------------------------------------------------

    def models(self, user: str) -> list[dict]:
        """Every model this user may choose: id, name and where it comes from."""
        found = [{"id": TESTNET, "name": "testnet U-Net (bundled)", "source": "bundled"}]
        if self.models_folder is not None:
            for path in sorted(self.models_folder.glob("*.onnx")):
                if path.is_file() and not path.is_symlink() and _FILE_NAME.fullmatch(path.name):
                    found.append({"id": f"folder-{path.stem}", "name": path.name, "source": "models folder"})
        return found + self._uploads(user, "models")

    def model_path(self, user: str, model_id: str) -> Path:
        """The file of model `model_id`, one of `models`."""
        if model_id == TESTNET:
            return data.testnet_model_path()
        if model_id.startswith("folder-") and self.models_folder is not None:
            name = model_id.removeprefix("folder-") + ".onnx"
            if _FILE_NAME.fullmatch(name):
                listed = inside(self.models_folder, name)
                if listed.is_file():
                    check_external_data(listed)
                    return listed
        elif uploaded := self._uploaded(user, "models", model_id, ".onnx"):
            return uploaded
        raise RequestError(404, f"no model {model_id!r}; choose one of the list or upload an .onnx file")

    def save_model(self, user: str, name: str | None, content: bytes) -> dict:
        """Keep an uploaded model once it parses as ONNX with all its weights inside; its id and name."""
        if len(content) > self.limits.model_bytes:
            raise RequestError(413, too_large("model", len(content), self.limits.model_bytes))
        try:
            proto = onnx.load_model_from_string(content)
        except Exception:  # onnx raises DecodeError and others for what is not a model
            raise RequestError(400, f"{display_name(name, 'the upload')} is not an ONNX model; upload an .onnx file "
                                    "exported from your framework") from None
        if any(_external(tensor) is not None for tensor in _tensors(proto.graph)):
            raise RequestError(400, "the model keeps weights in external data files, which an upload cannot carry; "
                                    "save it with all weights inside (onnx.save(model, path, "
                                    "save_as_external_data=False))")
        model_id = new_id()
        folder = self.user_folder(user, "models")
        with onnxplain_io.atomic_path(folder / f"{model_id}.onnx") as staging:
            staging.write_bytes(content)
        record = {"id": model_id, "name": display_name(name, "model.onnx")}
        (folder / f"{model_id}.json").write_text(json.dumps(record))
        return record

    # Images -----------------------------------------------------------------------------------

    def images(self, user: str) -> list[dict]:
        """Every image this user may choose: the bundled samples, then the user's uploads."""
        found = [{"id": f"sample-{index}", "name": f"testnet sample {index}", "source": "bundled"}
                 for index, _ in enumerate(data.sample_names())]
        return found + self._uploads(user, "images")

    def image_path(self, user: str, image_id: str) -> Path:
        """The PNG file of image `image_id`, one of `images`."""
        names = data.sample_names()
        if image_id.startswith("sample-") and image_id.removeprefix("sample-").isdigit():
            index = int(image_id.removeprefix("sample-"))
            if index < len(names):
                return data.samples_dir() / "images" / names[index]
        elif uploaded := self._uploaded(user, "images", image_id, ".png"):
            return uploaded
        raise RequestError(404, f"no image {image_id!r}; pick a sample or upload an image")

    def save_image(self, user: str, name: str | None, content: bytes) -> dict:
        """Keep an uploaded image, read whole and stored as PNG; its id, name and size."""
        label = display_name(name, "the upload")
        if len(content) > self.limits.image_bytes:
            raise RequestError(413, too_large("image", len(content), self.limits.image_bytes))
        try:
            with Image.open(bytes_io.BytesIO(content)) as picture:
                if picture.width * picture.height > self.limits.image_pixels:
                    raise RequestError(413, f"{label} has {picture.width}x{picture.height} pixels, more than the "
                                            f"{self.limits.image_pixels} taken; resize it")
                picture.load()  # decodes every byte: a truncated file fails here
                pixels = np.asarray(picture.convert("RGBA" if "A" in picture.getbands() else "RGB"))
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
            raise RequestError(400, f"{label} is not an image Pillow can read whole ({error}); upload a PNG or "
                                    "JPEG file") from None
        image_id = new_id()
        folder = self.user_folder(user, "images")
        onnxplain_io.save_png(pixels, folder / f"{image_id}.png")
        record = {"id": image_id, "name": display_name(name, "image.png"),
                  "width": int(pixels.shape[1]), "height": int(pixels.shape[0])}
        (folder / f"{image_id}.json").write_text(json.dumps(record))
        return record


    def _uploads(self, user: str, kind: str) -> list[dict]:
        """The user's uploads of `kind` (models, images), from the record kept beside each."""
        return [{**json.loads(meta.read_text()), "source": "uploaded"}
                for meta in sorted(self.user_folder(user, kind).glob("*.json"))]

    def _uploaded(self, user: str, kind: str, item_id: str, suffix: str) -> Path | None:
        """The file of the user's upload `item_id`, or None where there is none."""
        if not _ID.fullmatch(item_id):
            return None
        path = self.user_folder(user, kind) / f"{item_id}{suffix}"
        return path if path.is_file() else None


def too_large(what: str, size: int, limit: int) -> str:
    """The message for an upload over its limit."""
    return (f"the {what} is {_size(size)}, more than the {_size(limit)} this explorer takes; start it with a "
            f"larger limit or upload a smaller {what}")


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count / 2**10:.0f} KiB"


def check_external_data(path: Path) -> None:
    """Refuse a model whose external data files would lie outside its own folder."""
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:
        raise RequestError(400, f"{path.name} is not an ONNX model") from None
    for tensor in _tensors(proto.graph):
        location = _external(tensor)
        if location and not (path.parent / location).resolve().is_relative_to(path.parent.resolve()):
            raise RequestError(403, f"{path.name} reads external data from {location!r}, outside its folder; "
                                    "keep a model's data files beside it")


def _tensors(graph: onnx.GraphProto) -> list[onnx.TensorProto]:
    found = list(graph.initializer)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                found.append(attribute.t)
            for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                found += _tensors(sub)
    return found


def _external(tensor: onnx.TensorProto) -> str | None:
    """The external data file a tensor reads, or None for a tensor kept inside the model."""
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        return None
    return next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
