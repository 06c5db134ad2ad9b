"""The words of the pictures: what a map's values are, why a picture is blank, and its header line.

Built from an attribution's record (method, score and aggregator names, target, model), so that
every picture says what it shows without the code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from onnxplain.errors import OnnxplainError

if TYPE_CHECKING:
    from onnxplain.attribution import Attribution

CIRCLE_KINDS = ("raw", "better", "worse")

_METHODS = {"hdm": "HDM", "rise": "RISE", "occlusion": "Occlusion", "ablation": "Superpixel ablation", "lime": "LIME",
            "kernel-shap": "KernelSHAP", "shapley": "Shapley sampling", "eigen-cam": "Eigen-CAM",
            "score-cam": "Score-CAM", "ablation-cam": "Ablation-CAM"}
# Each score's distance: its name, the words for it growing (further from the reference) and
# shrinking, and its unit. The class score is 1 - probability, so it is named by the probability.
_SCORES = {
    "hausdorff": ("Hausdorff distance", "increase", "decrease", " (px)"),
    "segment-distance": ("mean distance of the segment to the output", "increase", "decrease", " (px)"),
    "dice": ("Dice distance", "increase", "decrease", ""),
    "class-score": ("mean class probability", "decrease", "increase", ""),
}
# What a map value is, by aggregator; {worse} and {better} say how the score moved.
_AGGREGATORS = {
    "occluded-mean": "{worse} of the {noun} when hidden",
    "kept-mean": "{better} of the {noun} when kept",
    "linear-surrogate": "{better} of the {noun} per superpixel kept (linear fit)",
    "shapley": "Shapley value: {better} of the {noun} from keeping it",
}
def map_label(attribution: Attribution) -> str:
    """What the map's values are, for its colour bar: method, then the score's change and unit.

    Built from ``attribution.record`` (method, score and aggregator names); parts it does not
    know fall back to a generic wording.

    Examples
    --------
    >>> from onnxplain.attribution import Attribution
    >>> record = {"method": {"name": "hdm"}, "score": {"name": "hausdorff"}, "aggregator": {"name": "occluded-mean"}}
    >>> map_label(Attribution(np.zeros((2, 2)), np.zeros((2, 2, 1)), np.zeros((2, 2), bool), record=record))
    'HDM: increase of the Hausdorff distance when hidden (px)'
    """
    record = attribution.record
    method = method_title(record)
    noun, worse, better, unit = score_words(record)
    phrase = _AGGREGATORS.get(str(record.get("aggregator", {}).get("name", "")))
    if phrase is None or not record.get("score"):  # a plugin's aggregator: say only which way is which
        text = f"relevance for the {noun} (positive: supports the target)" if record.get("score") else \
            "relevance (positive: supports the target)"
    else:
        text = phrase.format(noun=noun, worse=worse, better=better) + unit
    return f"{method}: {text}" if method else f"{text[0].upper()}{text[1:]}"


def blank_reason(values: np.ndarray, *, kind: str = "map", noun: str = "score", record: dict | None = None
                 ) -> str | None:
    """Why a map, or HDM's per-circle values, shows nothing: a sentence to write in its picture, or None.

    Parameters
    ----------
    values : ndarray
        The map, or one value per circle.
    kind : {'map', 'raw', 'better', 'worse'}
        What `values` are: a map, or the circle values of `circle_values`.
    noun : str
        What the score measures, such as ``'Hausdorff distance'``.
    record : dict, optional
        The attribution's record: a map of a layer or of gradients is blank for its own reasons.

    Examples
    --------
    >>> blank_reason(np.zeros((4, 4)))
    'the map is zero everywhere: no perturbation changed the score'
    >>> blank_reason(np.array([0.0, 2.0]), kind="better") is None
    True
    >>> blank_reason(np.zeros((4, 4)), record={"layer": {"name": "relu_9"}})[:61]
    "the map is zero everywhere: the layer's weighted feature maps"
    """
    if kind not in ("map", *CIRCLE_KINDS):
        raise OnnxplainError(f"kind is one of map, {', '.join(CIRCLE_KINDS)}; got {kind!r}")
    values = np.asarray(values, dtype=np.float64)
    if values.size and values.max() > values.min():
        return None
    value = float(values.flat[0]) if values.size else 0.0
    if kind in ("better", "worse") and value == 0:
        other = "worse" if kind == "better" else "better"
        return f"no circle made the {noun} {kind}: hiding any one of them made it {other} or left it unchanged"
    if kind != "map":
        return f"every circle gave the same value ({value:.3g}): none mattered more than another"
    if value == 0:
        record = record or {}
        if "layer" in record:
            return ("the map is zero everywhere: the layer's weighted feature maps are nowhere positive, "
                    "and the ReLU keeps none")
        if "twin" in record:
            return "the map is zero everywhere: the target's score has no gradient at any pixel"
        return f"the map is zero everywhere: no perturbation changed the {noun}"
    return f"the map is {value:.3g} everywhere: it ranks no pixel above another"


def header(record: dict) -> str:
    """Method, score, target and model in one line, from the record."""
    parts = [method_title(record) or "relevance map"]
    if record.get("score"):
        parts.append(f"score: {record['score'].get('name')}")
    target = record.get("target", {})
    kind = target.get("kind", "class")
    box = target.get("box", [0, 0, 0, 0])
    if len(box) == 6:  # a volume's box, in voxel indices (i, j, k)
        corners = "box " + ", ".join(f"{axis} {box[n]}-{box[n + 3]}" for n, axis in enumerate("ijk"))
    else:
        corners = f"box x {box[0]}-{box[2]}, y {box[1]}-{box[3]}"
    where = {"box": corners, "pixels": f"{len(target.get('pixels', []))} pixel(s)",
             "voxels": f"{len(target.get('voxels', []))} voxel(s)", "mask": "a mask"}.get(kind, "whole class")
    if target.get("class") is not None:
        where += f", class {target['class']}"
    parts.append(f"target: {where}")
    if record.get("model", {}).get("path"):
        parts.append("model: " + str(record["model"]["path"]).replace("\\", "/").rsplit("/", 1)[-1])
    return "  ·  ".join(parts)


def method_title(record: dict) -> str:
    name = str(record.get("method", {}).get("name", ""))
    return _METHODS.get(name, name)


def score_words(record: dict) -> tuple[str, str, str, str]:
    """The score's noun, the words for it growing and shrinking, and its unit."""
    name = str(record.get("score", {}).get("name", ""))
    settings = record.get("score", {}).get("parameters") or {}
    statistic, direction = settings.get("statistic", "max"), settings.get("direction", "both")
    if name == "hausdorff" and (statistic, direction) != ("max", "both"):  # its robust kin, named as set
        noun = {"max": "largest", "p95": "95th-percentile", "mean": "mean"}.get(statistic, statistic)
        whose = {"reference": " of the segment to the output", "output": " of the output to the segment"}
        return f"{noun} pixel distance{whose.get(direction, '')}", "increase", "decrease", " (px)"
    return _SCORES.get(name, (f"{name} distance" if name else "score", "increase", "decrease", ""))
