"""The method interface: what a plugin of the ``onnxplain.methods`` group adds.

A method answers one question, ``attribute(model, image, target) -> Attribution``: which input
pixels made `model` segment the `target` as it did. The public `Method.attribute` checks
everything once (that the model can serve what the method needs, the image, the target, the
map that comes back) and fills in the record; a method writes only `_attribute`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from onnxplain.attribution import Attribution
from onnxplain.errors import OnnxplainError, PluginError
from onnxplain.outputs import ModelOutput
from onnxplain.registry import plugin_parameters
from onnxplain.segmenter import Segmenter
from onnxplain.targets import Reference, Target, make_reference

Progress = Callable[[int], None]
"""Called with the number of images done, after each batch of them."""


@dataclass(frozen=True)
class Baseline:
    """The unperturbed case: what every method of one run shares, computed once.

    Attributes
    ----------
    image : ndarray of float32, shape (*spatial, C)
        The image, as the model takes it.
    target : Target
        What is explained, with its class and output.
    output : ModelOutput
        The model's answer on the unperturbed image, for the target's class and output.
    reference : Reference
        What perturbed outputs are compared with: the model's own mask (or a given segment) and
        the target's region.
    """

    image: np.ndarray
    target: Target
    output: ModelOutput
    reference: Reference


def make_baseline(
    model: Segmenter, image: np.ndarray, target: Target | None = None, *, segment: np.ndarray | None = None,
    spacing: tuple[float, ...] | None = None,
) -> Baseline:
    """Run the model once on the unperturbed `image` and build the reference for `target`.

    A model with a `prepare` hook (see `onnxplain.segmenter.Segmenter`) gets the image first: a
    reduced-precision `OnnxModel` is made and checked on it there, and refused before any
    explanation runs.

    Parameters
    ----------
    model : Segmenter
        The model.
    image : ndarray
        The image, ``(*spatial, C)`` or ``(*spatial)`` for one channel.
    target : Target, optional
        What to explain; the whole class (the model's default class) when omitted.
    segment : ndarray, optional
        A ground-truth segment to compare with instead of the model's own prediction.
    spacing : tuple of float, optional
        Size of a pixel (voxel) along each spatial axis, in the unit distances are measured in
        (millimetres for NIfTI volumes); 1 per axis (pixels) when omitted.

    Returns
    -------
    Baseline
    """
    target = target or Target.whole_class()
    image = model.check_image(image)
    prepare = getattr(model, "prepare", None)  # optional: a model that needs the image before it predicts
    if prepare is not None:
        prepare(image, class_index=target.class_index, output=target.output)
    output = model.predict(image[None], class_index=target.class_index, output=target.output)
    reference = make_reference(output.mask[0], segment=segment, target=target, spacing=spacing)
    return Baseline(image=image, target=target, output=output, reference=reference)


class Method(ABC):
    """An attribution method: the unit of extension (entry-point group ``onnxplain.methods``).

    Contract of every method:

    - `needs` lists what it asks of the model, among ``'predictions'``, ``'activations'`` and
      ``'gradients'``; a model whose `serves` lacks one is refused before any work, with a reason;
    - `_attribute` returns an `Attribution` whose map has the image's spatial shape, finite values,
      positive where a pixel supports the target's segmentation;
    - every random choice comes from the `seed` the method was made with: the same seed, the same map;
    - it never changes the image, the model or the target it is given.

    Subclasses set `name`, keep each constructor argument as an attribute of the same name (the
    command line reads ``-p NAME=VALUE`` by the constructor's type hints, and the record stores
    them), and implement `_attribute`.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset({"predictions"})

    def attribute(
        self,
        model: Segmenter,
        image: np.ndarray,
        target: Target | None = None,
        *,
        segment: np.ndarray | None = None,
        baseline: Baseline | None = None,
        spacing: tuple[float, ...] | None = None,
        batch_size: int | None = None,
        progress: Progress | None = None,
    ) -> Attribution:
        """Explain which pixels of `image` made `model` segment `target` as it did.

        Parameters
        ----------
        model : Segmenter
            The model, such as an `onnxplain.OnnxModel`.
        image : ndarray
            The image in image space, ``(*spatial, C)`` or ``(*spatial)`` for one channel.
        target : Target, optional
            What to explain; the whole class when omitted.
        segment : ndarray, optional
            Ground-truth segment to compare with; the model's own prediction when omitted.
        baseline : Baseline, optional
            The unperturbed case, when several methods share it (see `make_baseline`); it must be
            of this `image`, `target` and `segment`.
        spacing : tuple of float, optional
            Size of a pixel (voxel) along each spatial axis, for the distances of scores
            (millimetres for NIfTI volumes); pixels when omitted.
        batch_size : int, optional
            Perturbed images made, run, scored and aggregated together (the model runs them in
            forward passes of its own batch size); the model's batch size when omitted. Memory
            grows linearly with it.
        progress : callable, optional
            Called with the number of images done after each batch.

        Returns
        -------
        Attribution
        """
        serves = set(getattr(model, "serves", ()))
        missing = sorted(self.needs - serves)
        if missing:
            raise OnnxplainError(
                f"method {self.name!r} needs the model's {' and '.join(missing)}, which "
                f"{type(model).__name__} cannot give (it serves {', '.join(sorted(serves)) or 'nothing'}); "
                "choose a method that needs predictions only, or a model bridge that serves "
                f"{' and '.join(missing)}",
                parameters=("method",),
            )
        batch_size = model.batch_size if batch_size is None else batch_size
        if batch_size < 1:
            raise OnnxplainError(f"batch_size must be at least 1, got {batch_size}", parameters=("batch_size",))
        started = time.perf_counter()
        baseline = baseline or make_baseline(model, image, target, segment=segment, spacing=spacing)
        patches = dict(getattr(model, "patch_counts", {}))  # a model that runs on patches counts them
        attribution = self._attribute(model, baseline, batch_size=batch_size, progress=progress)
        spatial = baseline.image.shape[:-1]
        if attribution.map.shape != spatial or not np.isfinite(attribution.map).all():
            raise PluginError(
                f"method {self.name!r} returned a map shaped {attribution.map.shape} (finite: "
                f"{bool(np.isfinite(attribution.map).all())}); a map has the image's spatial shape {spatial}, "
                "finite values"
            )
        attribution.record.update(
            method=plugin_record(self),
            target=baseline.target.describe(),
            reference={"source": baseline.reference.source, "pixels": int(baseline.reference.mask.sum())},
            model=model.describe(),
            batch_size=batch_size,
        )
        if baseline.reference.spacing is not None:
            attribution.record["reference"]["spacing"] = list(baseline.reference.spacing)
        if patches:  # how many patch passes the perturbed images ran, and how many reused the image's outputs
            after = getattr(model, "patch_counts", patches)
            counts = {key: after[key] - value for key, value in patches.items()}
            attribution.record["patches"] = {**counts, "passes_saved": round(
                counts["reused"] / max(1, counts["run"] + counts["reused"]), 4)}
        attribution.record.setdefault("seconds", {})["total"] = round(time.perf_counter() - started, 3)
        return attribution

    @abstractmethod
    def _attribute(
        self, model: Segmenter, baseline: Baseline, *, batch_size: int, progress: Progress | None
    ) -> Attribution:
        """The method's work on a checked baseline; see the class contract."""

    def count(self, image: np.ndarray) -> int | None:
        """How many images the method will run through the model for `image`; None if unknown."""
        return None

    def parameters(self) -> dict[str, Any]:
        """The constructor arguments, as recorded with each attribution."""
        return plugin_parameters(self)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.parameters().items())
        return f"{type(self).__name__}({arguments})"


def plugin_record(plugin: Any) -> dict:
    """A plugin as the record stores it: its name, class and parameters."""
    kind = type(plugin)
    return {"name": plugin.name, "class": f"{kind.__module__}.{kind.__qualname__}", "parameters": plugin.parameters()}
