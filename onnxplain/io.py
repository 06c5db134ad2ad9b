"""Reading images and masks, and writing result files atomically."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
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
        Any image Pillow reads (PNG, JPEG, TIFF...), 8- and 16-bit samples scaled to [0, 1]; or a 2-D
        NIfTI image (``.nii``, ``.nii.gz``), scaled from its own minimum and maximum to [0, 1], its
        first array axis as rows (the layout nibabel gives, not turned to a viewer's orientation).
    channels : {1, 3}, optional
        Convert to grayscale (1) or RGB (3), as the model takes; keep the file's own channels
        (alpha dropped) when omitted.

    Returns
    -------
    ndarray of float32, shape (H, W, C)
    """
    if channels not in (None, 1, 3):
        raise OnnxplainError(f"images can be read with 1 or 3 channels, not {channels}")
    if is_nifti(path):
        array = _read_nifti(path, "image")
        low, high = float(array.min()), float(array.max())
        # Scanner units (Hounsfield, arbitrary MR values) have no fixed range: each slice spans [0, 1].
        scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
        return np.repeat(scaled.astype(np.float32)[:, :, None], channels or 1, axis=2)
    with _open(path, "image") as picture:
        if picture.mode in ("I;16", "I;16B", "I;16L", "I"):
            # Pillow's own conversion of 16-bit samples to RGB clips them at 255 (a 0/1 image).
            array = np.asarray(picture, dtype=np.float32) / 65535.0
            return np.repeat(array[:, :, None], channels or 1, axis=2)
        if channels is None:
            channels = 1 if picture.mode in ("1", "L", "LA", "I", "F") else 3
        picture = picture.convert("L" if channels == 1 else "RGB")
        array = np.asarray(picture, dtype=np.float32) / 255.0
    return array[:, :, None] if array.ndim == 2 else array


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask image or volume: every non-zero pixel (voxel) is in the mask.

    Parameters
    ----------
    path : str or Path
        A grayscale or colour image, a 2-D or 3-D NIfTI image, or a 3-D NumPy volume (``.npy``).

    Returns
    -------
    ndarray of bool, shape (H, W) or (I, J, K)
    """
    if is_nifti(path) or str(path).lower().endswith(".npy"):
        from onnxplain.volumes import read_volume  # volumes need nibabel, imported only then

        if is_nifti(path) and _nifti_dims(path) == 2:
            return _read_nifti(path, "mask") != 0
        return read_volume(path).array != 0
    with _open(path, "mask") as picture:
        return np.asarray(picture.convert("L")) > 0


NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: str | Path) -> bool:
    """Whether `path` names a NIfTI file (``.nii`` or ``.nii.gz``)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def _nifti_dims(path: str | Path) -> int | None:
    """Axes longer than one in a NIfTI file's header, None when the file cannot be read (reading it says why)."""
    import nibabel

    try:
        return sum(side > 1 for side in nibabel.load(path).shape)  # type: ignore[attr-defined]
    except Exception:
        return None


def _read_nifti(path: str | Path, what: str) -> np.ndarray:
    """The 2-D array of a NIfTI file (axes of length 1 dropped), as float64."""
    import nibabel  # only NIfTI files need it

    path = Path(path)
    if not path.is_file():
        raise OnnxplainError(f"{what} file not found: {path}")
    try:
        array = np.asarray(nibabel.load(path).get_fdata(), dtype=np.float64)  # type: ignore[attr-defined]
    except Exception as error:  # nibabel raises its own types, and OSError/EOFError for truncated files
        raise OnnxplainError(f"{path} is not a NIfTI file that nibabel can read ({error})") from error
    kept = np.squeeze(array) if np.squeeze(array).ndim >= 2 else array
    while kept.ndim > 2 and kept.shape[-1] == 1:  # a slice stored with trailing axes of length 1
        kept = kept[..., 0]
    if kept.ndim > 2:
        raise OnnxplainError(f"{path} is a {np.squeeze(array).ndim}-D volume shaped {array.shape}, and this needs a "
                             "2-D image: give a 2-D slice, or explain the volume with a 3-D model")
    if kept.ndim < 2:
        raise OnnxplainError(f"{path} holds a {kept.ndim}-D array shaped {array.shape}, not a 2-D image")
    if not np.isfinite(kept).all():
        raise OnnxplainError(f"{path} holds NaN or infinite values; an image holds finite numbers")
    return kept


@contextlib.contextmanager
def _open(path: str | Path, what: str) -> Iterator[Image.Image]:
    path = Path(path)
    if path.is_dir():
        raise OnnxplainError(f"{path} is a folder, not an {what} file")
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


MANIFEST = ".onnxplain-result"
"""The file in every result folder listing what onnxplain wrote there: only such a folder, unchanged
since, may be replaced by a new result."""

_MIN_FREE_BYTES = 1 << 20


class _ResultKeptError(OnnxplainError):
    """The work is done, but its folder could not take it: the staged result stays where it is."""


def _entries(folder: Path) -> set[str]:
    """Every file and folder below `folder`, hidden ones included, as relative POSIX paths."""
    return {entry.relative_to(folder).as_posix() for entry in folder.rglob("*")} - {MANIFEST}


def is_result_folder(path: Path) -> bool:
    """Whether `path` is a result folder onnxplain wrote and nobody has added to since.

    Its manifest must list every entry below it: a file of the user's (a note, a ``.git``, the
    input image) makes it a folder that replacing would destroy.
    """
    try:
        listed = set(json.loads((path / MANIFEST).read_text()))
    except (OSError, ValueError, TypeError):
        return False
    return _entries(path) <= listed


def check_output_folder(path: str | Path, *, inputs: Sequence[str | Path | None] = ()) -> Path:
    """Refuse, before any work, an output folder that cannot take a result.

    Refused with the fix: a file; a folder holding anything but an earlier onnxplain result (which
    replacing it would delete); the current folder or one that holds it; a folder holding one of
    `inputs` (the files the work reads, such as maps saved earlier); a mount point; a path below a
    file. Links are followed: the result goes where they point.

    Returns
    -------
    Path
        `path`, resolved.
    """
    path = Path(path).resolve()
    if path.exists() and not path.is_dir():
        raise OnnxplainError(f"the output {path} is a file, not a folder; give a folder", parameters=("out",))
    here = Path.cwd().resolve()
    if path == here or path in here.parents:
        raise OnnxplainError(f"the output folder {path} is the current folder or holds it, which a result "
                             "replaces whole; give a new folder", parameters=("out",))
    for given in inputs:
        if given is not None and (Path(given).resolve() == path or path in Path(given).resolve().parents):
            raise OnnxplainError(f"the output folder {path} holds {given}, which this run reads; give another "
                                 "folder", parameters=("out",))
    if path.is_dir() and os.path.ismount(path):
        raise OnnxplainError(f"the output folder {path} is a mount point, which a result cannot replace; give a "
                             "folder inside it", parameters=("out",))
    if path.is_dir() and any(path.iterdir()) and not is_result_folder(path):
        raise OnnxplainError(
            f"the output folder {path} holds files that onnxplain did not write (or that were added to its "
            "result), which saving a result there would replace; give a new or empty folder", parameters=("out",))
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OnnxplainError(f"cannot create the output folder {path}: {parent} is a file",
                                     parameters=("out",))
            break
    return path


@contextlib.contextmanager
def output_folder(path: str | Path, *, needed_bytes: int = 0,
                  inputs: Sequence[str | Path | None] = ()) -> Iterator[Path]:
    """Stage a result folder: an empty temporary folder beside `path`, which replaces `path` whole
    once the block succeeds and is removed if it fails or is interrupted.

    Enter it before the work: an output that cannot be written (a file, a read-only or full disk,
    a folder of someone else's files) is refused before anything is computed. Files of an earlier
    result at `path` are gone afterwards, never mixed with the new ones; a failure leaves `path`
    as it was. The folder gets a manifest (`MANIFEST`) of what was written, so that only an
    unchanged onnxplain result is ever replaced; if the folder changed during the work, the new
    result is left in the staging folder and the error says where.

    Parameters
    ----------
    path : str or Path
        The result folder.
    needed_bytes : int
        About how much the result will take; the disk must have that much free.
    inputs : sequence of path
        Files the work reads, which the result must not replace.

    Yields
    ------
    Path
        The staging folder to write into.
    """
    path = check_output_folder(path, inputs=inputs)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    except OSError as error:
        raise OnnxplainError(f"cannot write the output folder {path}: {error.strerror or error}; "
                             "choose a folder you can write to", parameters=("out",)) from error
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    try:
        free = shutil.disk_usage(staging).free
        if free < max(needed_bytes, _MIN_FREE_BYTES):
            raise OnnxplainError(
                f"the disk of {path} has {free / 2**20:.1f} MiB free, less than the "
                f"{max(needed_bytes, _MIN_FREE_BYTES) / 2**20:.1f} MiB the result needs; free space or "
                "choose another folder", parameters=("out",))
        yield staging
        save_text(json.dumps(sorted(_entries(staging)), indent=0) + "\n", staging / MANIFEST)
        _replace_folder(staging, path)
    except _ResultKeptError:
        raise
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError):
            raise OnnxplainError(f"could not write the result in {path}: {error.strerror or error}; nothing was "
                                 "written there; free space or choose another folder", parameters=("out",)) from error
        raise


def _replace_folder(staging: Path, path: Path) -> None:
    """Move `staging` to `path`; an earlier result there is moved aside, and deleted once the new one is in."""
    if path.exists() and any(path.iterdir()) and not is_result_folder(path):
        raise _ResultKeptError(f"the output folder {path} changed during the work and now holds files that onnxplain "
                          f"did not write; the result is in {staging}: move it where you want it",
                          parameters=("out",))
    if not path.exists():
        os.replace(staging, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.replace(path, old / path.name)
    try:
        os.replace(staging, path)
    except BaseException:
        os.replace(old / path.name, path)  # the earlier result back where it was
        os.rmdir(old)
        raise
    shutil.rmtree(old, ignore_errors=True)


_LEFTOVER_SUFFIXES = (".partial", ".old", ".tmp")
"""What `output_folder` (``.NAME.*.partial``), `_replace_folder` (``.NAME.*.old``) and `atomic_path`
(``.NAME.*.tmp``) name their temporary entries: hidden, with these suffixes."""


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Delete what writes killed part way left below `folder`: staging folders, results moved aside and
    temporary files, recognised by their names (see `output_folder` and `atomic_path`).

    Only for a folder that no other process is writing into: their work in progress looks the same.

    Returns
    -------
    list of Path
        What was deleted.
    """
    removed = []
    for parent, folders, files in os.walk(folder):
        for name in [*folders, *files]:
            if name.startswith(".") and name.endswith(_LEFTOVER_SUFFIXES):
                path = Path(parent) / name
                if name in folders:
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
        folders[:] = [name for name in folders if not (name.startswith(".") and name.endswith(_LEFTOVER_SUFFIXES))]
    return removed


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
