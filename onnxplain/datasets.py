"""Whole datasets: the images of a folder, and a run over them that resumes where it stopped.

A dataset is a folder of images (PNG, JPEG, everything Pillow reads, and 2-D NIfTI), nested or
not. In onnxplain's own layout (what ``onnxplain testnet generate`` writes) the images are in
``images/``, with optional ground-truth segments in ``segments/`` and named regions in
``shapes/REGION/``, paired with their image by relative path and name whatever their format.

`onnxplain.resume` runs over them, one result folder per image, and resumes a run that stopped.
"""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxplain import io
from onnxplain.errors import OnnxplainError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", *io.NIFTI_SUFFIXES)


@dataclass(frozen=True)
class Item:
    """One image to explain or evaluate on.

    Attributes
    ----------
    name : str
        Its name in the table: its path relative to the dataset's images, with ``/``.
    image : ndarray of float32, shape (H, W, C)
        The image, in [0, 1].
    segment : ndarray of bool, optional
        Ground-truth segment; the model's prediction is the reference when omitted.
    masks : dict of str to ndarray of bool
        Named regions for the localisation metrics.
    """

    name: str
    image: np.ndarray
    segment: np.ndarray | None = None
    masks: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetImage:
    """One image file of a dataset, not yet read.

    Attributes
    ----------
    name : str
        Its path relative to `root`, with ``/``: its name in the table and its result folder.
    path : Path
        The file.
    root : Path
        The folder the images are in: ``DIR/images`` in onnxplain's layout, else ``DIR``.
    """

    name: str
    path: Path
    root: Path

    def read(self, *, channels: int | None = None) -> Item:
        """Read the image, and in onnxplain's layout its segment and regions (`OnnxplainError` if one is unreadable)."""
        annotations = self.root.parent if self.root.name == "images" else None
        segment = masks = None
        if annotations is not None:
            found = self.segment_file()
            segment = io.read_mask(found) if found is not None else None
            shapes = annotations / "shapes"
            regions = sorted(p for p in shapes.iterdir() if p.is_dir()) if shapes.is_dir() else []
            masks = {region.name: io.read_mask(found) for region in regions
                     if (found := _same_name(region, self.name)) is not None}
        return Item(name=self.name, image=io.read_image(self.path, channels=channels), segment=segment,
                    masks=masks or {})

    def segment_file(self) -> Path | None:
        """The ground-truth segment file of the image, in onnxplain's layout, if there is one."""
        if self.root.name != "images":
            return None
        return _same_name(self.root.parent / "segments", self.name)


@dataclass(frozen=True)
class ExplainWork:
    """One image's explanations, as a dataset engine runs them on a worker's model (picklable).

    Calling it with a model and ``(Item, extra)`` explains the item with every method, sharing the
    unperturbed forward pass, and returns the files of its result folder, by relative path: those a
    single ``onnxplain explain`` writes, made on the worker (pictures are most of the work after the
    forward passes) and sent back as bytes for this process to write. Every method draws from its
    own seed afresh for each image, so a map depends on neither the engine nor the order.

    Attributes
    ----------
    methods : list of Method
        The methods, each with its seed and score; with several, one subfolder each.
    target : Target, optional
        What to explain; the whole class when omitted.
    batch_size : int, optional
        Perturbed images per forward pass.
    color_map : str
        Matplotlib colormap of the pictures.
    model_path : str, optional
        The model file as this process names it, for the record (a worker opens a copy of its own).
    """

    methods: list[Any]
    target: Any = None
    batch_size: int | None = None
    color_map: str = "jet"
    model_path: str | None = None

    def __call__(self, model: Any, payload: tuple[Item, dict]) -> dict[str, bytes]:
        from onnxplain.method import make_baseline

        item, extra = payload
        baseline = make_baseline(model, item.image, self.target, segment=item.segment)
        for method in self.methods:  # every method's masks checked before any runs
            method.count(baseline.image)
        results = [method.attribute(model, baseline.image, self.target, baseline=baseline, batch_size=self.batch_size)
                   for method in self.methods]
        with tempfile.TemporaryDirectory(prefix="onnxplain-image-") as temporary:
            for method, result in zip(self.methods, results, strict=True):
                folder = Path(temporary) / (method.name if len(self.methods) > 1 else "")
                folder.mkdir(exist_ok=True)
                if self.model_path is not None:
                    result.record["model"]["path"] = self.model_path
                result.write(folder, color_map=self.color_map, extra=extra)
            # The pictures leave matplotlib objects in reference cycles: freed here, not at interpreter exit,
            # where matplotlib, torn down first, prints "Exception ignored" noise.
            gc.collect()
            return {path.relative_to(temporary).as_posix(): path.read_bytes()
                    for path in sorted(Path(temporary).rglob("*")) if path.is_file()}


def write_files(files: dict[str, bytes], folder: Path) -> None:
    """Write `files` (relative path to content, as `ExplainWork` returns them) into `folder`, being staged."""
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def find_images(folder: str | Path) -> list[DatasetImage]:
    """The image files of a dataset folder, sorted by relative path.

    ``DIR/images/`` when it exists, else every image file below ``DIR``; both searched
    recursively, hidden files and folders left out.

    Raises
    ------
    OnnxplainError
        When the folder is missing, is a file, or holds no images, each said apart.
    """
    folder = Path(folder)
    if not folder.exists():
        raise OnnxplainError(f"dataset folder not found: {folder}", parameters=("dataset",))
    if not folder.is_dir():
        raise OnnxplainError(f"the dataset {folder} is a file; give the folder that holds the images",
                             parameters=("dataset",))
    root = folder / "images" if (folder / "images").is_dir() else folder
    images = [DatasetImage(path.relative_to(root).as_posix(), path, root) for path in _image_files(root)]
    if not images:
        raise OnnxplainError(f"{root} holds no image files ({', '.join(IMAGE_SUFFIXES)}), in it or in its "
                             "subfolders; give a folder of images, or onnxplain's layout with images/",
                             parameters=("dataset",))
    return sorted(images, key=lambda image: image.name)


def _image_files(root: Path) -> Iterator[Path]:
    for parent, folders, files in os.walk(root, followlinks=True):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                yield Path(parent) / name


def _stem(name: str) -> str:
    """A file name without its image suffix (both parts of ``.nii.gz``)."""
    lowered = name.lower()
    for suffix in io.NIFTI_SUFFIXES[::-1]:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _same_name(folder: Path, name: str) -> Path | None:
    """The image file in `folder` at relative path `name` with any image suffix, if there is one."""
    where = folder / Path(name).parent
    if not where.is_dir():
        return None
    # Compared by name, not by a glob pattern: names may hold [ ] * ? and dots.
    stem = _stem(Path(name).name)
    found = sorted(p for p in where.iterdir() if p.is_file() and _stem(p.name) == stem
                   and p.name.lower().endswith(IMAGE_SUFFIXES))
    return found[0] if found else None
