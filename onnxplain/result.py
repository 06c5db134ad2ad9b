"""The result of an explanation, and how it saves itself."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxplain import io, render
from onnxplain.outputs import ModelOutput
from onnxplain.targets import Reference, Target


@dataclass
class Explanation:
    """A saliency map and everything that produced it.

    Attributes
    ----------
    saliency : ndarray of float32, shape (H, W)
        The map; see `onnxplain.explain` for what its values mean for each weighting.
    distances : ndarray of float64, shape (n,)
        The score's distance for every mask, in mask order.
    baseline_distance : float
        Distance of the unperturbed image's output to the reference.
    image : ndarray of float32, shape (H, W, C)
        The explained image.
    reference : Reference
        What outputs were compared with.
    baseline_output : ModelOutput
        The model's output on the unperturbed image.
    perturbation, score : Perturbation, Score
        The plugins used.
    target : Target
        What was explained.
    seed, batch_size : int
        Seed of the masks; perturbed images per forward pass.
    model : OnnxModel
        The model that was explained.
    seconds : dict
        Wall time: ``total`` and ``inference`` (inside onnxruntime calls).
    pixel_scores : ndarray of float32, shape (n, pixels in region), optional
        Each output's class probability at each region pixel, when asked for.
    """

    saliency: np.ndarray
    distances: np.ndarray
    baseline_distance: float
    image: np.ndarray
    reference: Reference
    baseline_output: ModelOutput
    perturbation: Any
    score: Any
    target: Target
    seed: int
    batch_size: int
    model: Any
    seconds: dict = field(default_factory=dict)
    pixel_scores: np.ndarray | None = None

    @property
    def method(self) -> str:
        """Name of the perturbation."""
        return self.perturbation.name

    def record(self) -> dict:
        """Everything needed to reproduce this explanation, as plain data."""
        height, width, channels = self.image.shape
        return {
            "onnxplain": _version("onnxplain"),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "model": self.model.describe(),
            "image": {"height": height, "width": width, "channels": channels},
            "method": _plugin_record(self.perturbation),
            "score": _plugin_record(self.score),
            "target": self.target.describe(),
            "reference": {"source": self.reference.source, "pixels": int(self.reference.mask.sum())},
            "seed": self.seed,
            "batch_size": self.batch_size,
            "masks": len(self.distances),
            "baseline_distance": self.baseline_distance,
            "saliency": {
                "min": float(self.saliency.min()),
                "max": float(self.saliency.max()),
                "mean": float(self.saliency.mean()),
            },
            "seconds": {name: round(value, 3) for name, value in self.seconds.items()},
            "versions": {
                "python": platform.python_version(),
                "numpy": np.__version__,
                "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
                "platform": platform.platform(),
            },
        }

    def save(self, out_dir: str | Path, *, color_map: str = "jet", extra: dict | None = None) -> list[Path]:
        """Write the map and its pictures into `out_dir`; each file appears whole or not at all.

        Files: ``saliency.npy`` (float32 map), ``distances.npy`` (one per mask), ``heatmap.png``,
        ``overlay.png`` (heatmap over the image), ``isolines.png`` (contours over the image), any
        pictures of the perturbation's own (HDM's circle maps), and ``explanation.json`` (the
        `record`, updated with `extra`).

        Parameters
        ----------
        out_dir : str or Path
            Folder, created if needed.
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
        # Make every picture first, so that a failure leaves no file of this explanation behind.
        pictures = {
            "heatmap": render.heatmap(self.saliency, color_map=color_map),
            "overlay": render.overlay(self.image, self.saliency, color_map=color_map),
            "isolines": render.isolines(self.image, self.saliency, color_map=color_map),
            **self.perturbation.pictures(self),
        }
        record = {**self.record(), **(extra or {})}
        written = [
            io.save_npy(self.saliency, out / "saliency.npy"),
            io.save_npy(self.distances, out / "distances.npy"),
        ]
        written += [io.save_png(picture, out / f"{name}.png") for name, picture in pictures.items()]
        written.append(io.save_json(record, out / "explanation.json"))
        return written


def _plugin_record(plugin: Any) -> dict:
    kind = type(plugin)
    return {"name": plugin.name, "class": f"{kind.__module__}.{kind.__qualname__}", "parameters": plugin.parameters()}


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
