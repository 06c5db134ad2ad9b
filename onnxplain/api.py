"""The Python entry point: ``onnxplain.explain(model, image, method=...)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from onnxplain.attribution import Attribution
from onnxplain.errors import OnnxplainError, PluginError
from onnxplain.method import Method, Progress, make_baseline
from onnxplain.model import load_model
from onnxplain.parameters import accepted_parameters
from onnxplain.registry import plugins
from onnxplain.segmenter import Segmenter
from onnxplain.targets import Target
from onnxplain.volumes import Volume, geometry


def create_method(name: str, *, seed: int | None = None, score: Any = None, **parameters: Any) -> Method:
    """Create the installed method `name` with `parameters`, and `seed` and `score` where it takes them.

    Examples
    --------
    >>> create_method("occlusion", window=16, seed=3).parameters()["window"]
    16
    """
    method_class = plugins.get("method", name)
    accepted = accepted_parameters(method_class)
    for option, value in (("seed", seed), ("score", score)):
        if value is not None:
            if option not in accepted:
                raise PluginError(f"method {name!r} takes no {option}", parameters=(option,))
            parameters[option] = value
    return plugins.create("method", name, **parameters)


def explain(
    model: Segmenter | str | Path,
    image: np.ndarray | Volume,
    *,
    method: str | Method = "hdm",
    target: Target | None = None,
    segment: np.ndarray | None = None,
    score: Any = None,
    seed: int | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
    **parameters: Any,
) -> Attribution:
    """Explain which pixels of `image` made `model` segment what it segmented.

    Parameters
    ----------
    model : Segmenter, str or Path
        The model (an `OnnxModel`, say), or its ``.onnx`` file (loaded with default options).
    image : ndarray, shape (*spatial) or (*spatial, C), or Volume
        The image in image space (values in [0, 1] for images read by `onnxplain.read_image`), or
        a volume read by `onnxplain.volumes.read_volume`: its spacing then measures the scores'
        distances in millimetres, and its geometry goes into the record, so that `save` writes
        NIfTI maps aligned with it.
    method : str or Method
        A method, or the name of an installed one, made with `parameters`, `seed` and `score`.
    target : Target, optional
        What to explain, with its class; the whole default class when omitted.
    segment : ndarray, optional
        Ground-truth segment to compare with; the model's own prediction when omitted.
    score : str or Score, optional
        For a method given by name: its score (the method's default when omitted).
    seed : int, optional
        For a method given by name: the seed of every random choice (0 when omitted).
    batch_size : int, optional
        Perturbed images handled together; the model's batch size when omitted (see `Method.attribute`).
    progress : callable, optional
        Called with the number of images done after each batch.
    **parameters
        For a method given by name: its parameters (``n_masks=2000``, ``window=16``...).

    Returns
    -------
    Attribution

    Examples
    --------
    >>> from onnxplain import data
    >>> result = explain(data.testnet_model_path(), data.load_sample(0).image, method="hdm", offset=40)
    >>> result.map.shape, len(result.values)
    ((240, 240), 36)
    """
    return explain_many(model, image, methods=[_method(method, seed, score, parameters)], target=target,
                        segment=segment, batch_size=batch_size, progress=progress)[0]


def explain_many(
    model: Segmenter | str | Path,
    image: np.ndarray | Volume,
    *,
    methods: list[str | Method],
    target: Target | None = None,
    segment: np.ndarray | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> list[Attribution]:
    """Explain `image` with several methods that share one unperturbed forward pass.

    Parameters are those of `explain`; `methods` are `Method` objects or names of installed ones
    (made with their defaults). Every method's masks are made and checked before any runs. Returns
    one `Attribution` per method, in order.
    """
    if isinstance(model, (str, Path)):
        model = load_model(model)
    if not methods:
        raise OnnxplainError("give at least one method", parameters=("method",))
    chosen = [_method(m, None, None, {}) for m in methods]
    volume = image if isinstance(image, Volume) else None
    if volume is not None and len(model.spatial_shape) != 3:
        raise OnnxplainError(f"the model takes {len(model.spatial_shape)}-D images, not volumes; explain a volume with "
                             "a 3-D model")
    pixels = image.array if isinstance(image, Volume) else image
    baseline = make_baseline(model, pixels, target, segment=segment,
                             spacing=None if volume is None else volume.spacing)
    for method in chosen:
        method.count(baseline.image)
    results = [m.attribute(model, baseline.image, baseline.target, baseline=baseline, batch_size=batch_size,
                           progress=progress) for m in chosen]
    if volume is not None:
        for result in results:
            result.record["volume"] = geometry(volume)
    return results


def _method(method: str | Method, seed: int | None, score: Any, parameters: dict[str, Any]) -> Method:
    if isinstance(method, Method):
        if seed is not None or score is not None or parameters:
            raise OnnxplainError(
                f"{type(method).__name__} is already made: give its seed, score and parameters to its constructor"
            )
        return method
    if not isinstance(method, str):
        raise PluginError(f"a method must be a Method or the name of one, got {type(method).__name__}")
    return create_method(method, seed=seed, score=score, **parameters)
