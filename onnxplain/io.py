"""Reading images and masks, and writing result files atomically."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from onnxplain.errors import OnnxplainError


def read_image(path: str | Path, *, channels: int | None = None) -> np.ndarray:
    """Read an image file into float32 (H, W, C) in [0, 1].

    Parameters
    ----------
    path : str or Path
        Any image Pillow reads (PNG, JPEG, TIFF...); 8- and 16-bit samples are scaled to [0, 1].
    channels : {1, 3}, optional
        Convert to grayscale (1) or RGB (3), as the model takes; keep the file's own channels
        (alpha dropped) when omitted.

    Returns
    -------
    ndarray of float32, shape (H, W, C)
    """
    with _open(path, "image") as picture:
        if channels not in (None, 1, 3):
            raise OnnxplainError(f"images can be read with 1 or 3 channels, not {channels}")
        if picture.mode in ("I;16", "I;16B", "I;16L", "I") and channels in (None, 1):
            array = np.asarray(picture, dtype=np.float32) / 65535.0
            return array[:, :, None]
        if channels is None:
            channels = 1 if picture.mode in ("1", "L", "LA", "I", "F") else 3
        picture = picture.convert("L" if channels == 1 else "RGB")
        array = np.asarray(picture, dtype=np.float32) / 255.0
    return array[:, :, None] if array.ndim == 2 else array


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask image: every non-zero pixel is in the mask.

    Parameters
    ----------
    path : str or Path
        A grayscale or colour image.

    Returns
    -------
    ndarray of bool, shape (H, W)
    """
    with _open(path, "mask") as picture:
        return np.asarray(picture.convert("L")) > 0


@contextlib.contextmanager
def _open(path: str | Path, what: str) -> Iterator[Image.Image]:
    path = Path(path)
    if not path.is_file():
        raise OnnxplainError(f"{what} file not found: {path}")
    try:
        with Image.open(path) as picture:
            picture.load()
            yield picture
    except (UnidentifiedImageError, OSError) as error:
        raise OnnxplainError(f"{path} is not an image file that Pillow can read ({error})") from error


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file name beside `path`, moved over `path` if the block succeeds, removed if not.

    A reader never sees a half-written file, and a failure leaves no file behind. The file gets
    the permissions a new file would (the temporary one starts private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a file that appears at `path`, whole, only once writing succeeded (see `atomic_path`)."""
    with atomic_path(path) as temporary, open(temporary, mode) as stream:
        yield stream


def save_png(image: Image.Image | np.ndarray, path: str | Path) -> Path:
    """Write a PIL image, or a uint8/bool array, as PNG atomically."""
    if isinstance(image, np.ndarray):
        array = image.astype(np.uint8) * 255 if image.dtype == bool else image
        image = Image.fromarray(array)
    with atomic_write(path) as stream:
        image.save(stream, format="PNG")
    return Path(path)


def save_npy(array: np.ndarray, path: str | Path) -> Path:
    """Write an array as ``.npy`` atomically."""
    with atomic_write(path) as stream:
        np.save(stream, array)
    return Path(path)


def json_text(record: dict) -> str:
    """`record` as JSON text indented for people to read, or an `OnnxplainError` naming the key JSON cannot hold."""
    try:
        return json.dumps(record, indent=2, default=_json_default) + "\n"
    except (TypeError, ValueError):
        for key, value in record.items():  # only on failure: find the value to name
            try:
                json.dumps(value, default=_json_default)
            except (TypeError, ValueError) as error:
                raise OnnxplainError(f"the record's {key!r} cannot be written as JSON: {error}") from error
        raise


def save_text(text: str, path: str | Path) -> Path:
    """Write text atomically."""
    with atomic_write(path, "w") as stream:
        stream.write(text)
    return Path(path)


def save_json(record: dict, path: str | Path) -> Path:
    """Write a JSON record atomically, indented for people to read."""
    return save_text(json_text(record), path)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
