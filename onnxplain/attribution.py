"""An attribution: the map and the facts behind it, as plain data that saves and loads."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxplain import io
from onnxplain.errors import OnnxplainError
from onnxplain.volumes import write_like

_ARRAYS = {"map": "saliency", "values": "distances", "image": "image", "segment": "segment"}
"""Fields saved as ``FILE.npy``; the file names are those onnxplain has always written."""


@dataclass
class Attribution:
    """A saliency map and what produced it: plain arrays and a JSON-ready record, no live objects.

    Attributes
    ----------
    map : ndarray of float32, shape (*spatial)
        The map: positive where a pixel supports the segmentation of the target (see each
        method for its scale).
    image : ndarray of float32, shape (*spatial, C)
        The explained image, in image space.
    segment : ndarray of bool, shape (*output spatial)
        The reference segment the outputs were compared with.
    region : ndarray of bool or None
        The target's region of interest, None for a whole class.
    values : ndarray of float64, shape (n,)
        One value per model evaluation, in order (a perturbation method's distances).
    baseline_value : float
        The value of the unperturbed image.
    arrays : dict of str to ndarray
        Named arrays of the method's own (HDM's circles, superpixel labels, per-pixel maps...).
    record : dict
        Everything needed to reproduce it: model, method and parameters, target, seed, timings.
    """

    map: np.ndarray
    image: np.ndarray
    segment: np.ndarray
    region: np.ndarray | None = None
    values: np.ndarray = field(default_factory=lambda: np.empty(0))
    baseline_value: float = 0.0
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)

    # The names the first onnxplain releases used.
    @property
    def saliency(self) -> np.ndarray:
        """The map (the name of earlier releases)."""
        return self.map

    @property
    def distances(self) -> np.ndarray:
        """The values (the name of earlier releases)."""
        return self.values

    @property
    def baseline_distance(self) -> float:
        """The baseline value (the name of earlier releases)."""
        return self.baseline_value

    @property
    def method(self) -> str:
        """Name of the method that made the map."""
        return str(self.record.get("method", {}).get("name", ""))

    @property
    def seconds(self) -> dict[str, float]:
        """Wall time: ``total`` and ``inference`` (inside onnxruntime)."""
        return dict(self.record.get("seconds", {}))

    def full_record(self) -> dict[str, Any]:
        """The record with the facts of this machine and the map's range added."""
        return {
            "onnxplain": _version("onnxplain"),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **self.record,
            "image": {"shape": list(self.image.shape)},
            "evaluations": len(self.values),
            "baseline_value": self.baseline_value,
            "saliency": {"min": float(self.map.min()), "max": float(self.map.max()), "mean": float(self.map.mean())},
            "arrays": sorted(self.arrays),
            "versions": {
                "python": platform.python_version(),
                "numpy": np.__version__,
                "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
                "platform": platform.platform(),
            },
        }

    def save(self, out_dir: str | Path, *, color_map: str = "jet", extra: dict | None = None) -> list[Path]:
        """Write the arrays, the pictures and ``explanation.json`` into `out_dir`, whole or not at all.

        Files: ``saliency.npy``, ``distances.npy`` (one value per evaluation), ``image.npy``,
        ``segment.npy``, ``region.npy`` (for a region target), ``NAME.npy`` for each of `arrays`,
        the pictures of `onnxplain.render.pictures`, and ``explanation.json``. A volume's
        attribution (one whose record holds the volume's geometry, ``record['volume']``, as
        `onnxplain.volumes.geometry` makes it) also writes ``saliency.nii.gz``, ``segment.nii.gz``
        and ``region.nii.gz`` with the volume's affine and header, to open aligned with it in a viewer. The folder is
        written under a temporary name and renamed once whole (see `onnxplain.io.output_folder`):
        a failure or an interruption leaves no partial result, and an earlier result in the folder
        is replaced, not mixed with this one.

        Parameters
        ----------
        out_dir : str or Path
            Folder, created if needed; an existing one must be empty or an earlier result.
        color_map : str
            Matplotlib colormap of the pictures.
        extra : dict, optional
            More facts for the JSON record, such as the image file.

        Returns
        -------
        list of Path
            The files written.
        """
        out = Path(out_dir)
        with io.output_folder(out) as staging:
            names = self.write(staging, color_map=color_map, extra=extra)
        return [out / name for name in names]

    def write(self, folder: Path, *, color_map: str = "jet", extra: dict | None = None) -> list[str]:
        """Write the files of `save` into `folder`, an existing folder being staged (`onnxplain.io.output_folder`).

        Every picture and the JSON text are made before the first file is written. Returns the
        names of the files written.
        """
        from onnxplain import render  # render reads attributions; imported here to keep this module plain

        pictures = render.pictures(self, color_map=color_map)
        record = io.json_text({**self.full_record(), **(extra or {})})  # fails, if it must, before any file is
        arrays = {file: getattr(self, name) for name, file in _ARRAYS.items()}
        if self.region is not None:
            arrays["region"] = self.region
        clash = set(self.arrays) & (set(arrays) | {"explanation"})
        if clash:
            raise OnnxplainError(f"a method's arrays may not be named {sorted(clash)}: those files are taken")
        arrays.update(self.arrays)
        for name, array in arrays.items():
            io.save_npy(np.asarray(array), folder / f"{name}.npy")
        volumes = self._volume_maps()
        for name, array in volumes.items():
            write_like(array, self.record["volume"], folder / f"{name}.nii.gz")
        for name, picture in pictures.items():
            io.save_png(picture, folder / f"{name}.png")
        io.save_text(record, folder / "explanation.json")
        return ([f"{name}.npy" for name in arrays] + [f"{name}.nii.gz" for name in volumes]
                + [f"{name}.png" for name in pictures] + ["explanation.json"])

    def _volume_maps(self) -> dict[str, np.ndarray]:
        """The maps written as NIfTI, by file name: none unless the record holds a volume's geometry."""
        if "volume" not in self.record or self.map.ndim != 3:
            return {}
        maps = {"saliency": self.map, "segment": self.segment.astype(np.float32)}
        if self.region is not None:
            maps["region"] = self.region.astype(np.float32)
        return maps

    @classmethod
    def load(cls, folder: str | Path) -> Attribution:
        """Read an attribution that `save` wrote.

        Parameters
        ----------
        folder : str or Path
            The folder holding ``explanation.json`` and the arrays.

        Returns
        -------
        Attribution
        """
        folder = Path(folder)
        record_path = folder / "explanation.json"
        if not record_path.is_file():
            raise OnnxplainError(f"{folder} holds no explanation.json; give a folder that onnxplain explain wrote")
        try:
            record = json.loads(record_path.read_text())
            fields = {name: np.load(folder / f"{file}.npy") for name, file in _ARRAYS.items()}
            region = np.load(folder / "region.npy") if (folder / "region.npy").is_file() else None
            arrays = {name: np.load(folder / f"{name}.npy") for name in record.get("arrays", [])}
        except (OSError, ValueError) as error:
            raise OnnxplainError(f"{folder} is not a whole saved attribution ({error})") from error
        saved = {k: record.pop(k, None) for k in ("onnxplain", "created", "image", "evaluations", "saliency",
                                                  "arrays", "versions")}
        baseline_value = float(record.pop("baseline_value", 0.0))
        record["saved_by"] = {"onnxplain": saved["onnxplain"], "created": saved["created"]}
        return cls(region=region, baseline_value=baseline_value, arrays=arrays, record=record, **fields)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
