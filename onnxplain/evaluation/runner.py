"""Explain images with several methods, measure every map with several metrics, tabulate and plot."""

from __future__ import annotations

import csv
import io as text_io
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from onnxplain import io
from onnxplain.datasets import Item, find_images
from onnxplain.errors import OnnxplainError
from onnxplain.evaluation.metric import EvaluationContext, Metric
from onnxplain.method import Baseline, Method, make_baseline
from onnxplain.segmenter import Segmenter
from onnxplain.targets import Target


@dataclass
class EvaluationTable:
    """Metric values per image and method, with the curves behind them.

    Attributes
    ----------
    rows : list of dict
        One row per image and method: ``image``, ``method``, ``score``, ``explain_seconds`` and
        every metric value.
    curves : dict
        ``(method, metric, curve name) -> list of (x, y)``, one entry per image.
    settings : dict
        Methods, metrics and their parameters, and the seed.
    """

    rows: list[dict] = field(default_factory=list)
    curves: dict[tuple[str, str, str], list[tuple[np.ndarray, np.ndarray]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    settings: dict = field(default_factory=dict)

    def columns(self) -> list[str]:
        """Column names in first-seen order."""
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.update(dict.fromkeys(row))
        return list(seen)

    def means(self) -> dict[str, dict[str, float]]:
        """Mean of every numeric column, per method."""
        grouped: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for row in self.rows:
            for key, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    grouped[row["method"]][key].append(float(value))
        return {method: {k: float(np.mean(v)) for k, v in values.items()} for method, values in grouped.items()}

    def to_csv(self) -> str:
        """The rows as CSV text."""
        buffer = text_io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns(), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return buffer.getvalue()

    def plot(self) -> Image.Image | None:
        """Mean curves per method and metric (deletion, insertion, srg), with the random maps'; None without curves."""
        metrics = sorted({metric for _, metric, _ in self.curves})
        if not metrics:
            return None
        figure = Figure(figsize=(8 * len(metrics), 4), dpi=100)
        methods = sorted({m for m, _, _ in self.curves})
        colours = {method: f"C{i % 10}" for i, method in enumerate(methods)}  # matplotlib's 10-colour cycle
        for index, metric in enumerate(metrics):
            axes = figure.add_subplot(1, len(metrics), index + 1)
            drawn_baselines: set[str] = set()
            highest, images = 1.0, 0
            for (method, name, curve), entries in sorted(self.curves.items()):
                if name != metric:
                    continue
                x, y = entries[0][0], np.mean([values for _, values in entries], axis=0)
                highest, images = max(highest, float(y.max())), len(entries)
                # Least-relevant-first curves dotted, so that each method keeps one colour.
                style = ":" if "LeRF" in curve else "-"
                if curve.startswith("random"):
                    # Random maps depend on the image and the seed only: one line per curve says it all.
                    if curve not in drawn_baselines:
                        axes.plot(x, y, color="gray", linestyle="--" if style == "-" else ":", label=curve)
                        drawn_baselines.add(curve)
                    continue
                axes.plot(x, y, color=colours[method], linestyle=style, label=f"{method}, {curve}")
            axes.set_title(f"{metric} (mean of {images} image(s))")
            axes.set_xlabel("fraction of pixels " + ("revealed" if metric == "insertion" else "removed"))
            axes.set_ylabel("score relative to the unperturbed image" if metric == "srg" else "score")
            axes.set_ylim(-0.02, highest + 0.02)
            axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves, not on them
        figure.tight_layout()
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``evaluation.csv``, ``evaluation.json`` (rows, means per method, settings) and ``curves.png``
        into `out_dir`, whole or not at all (see `onnxplain.io.output_folder`)."""
        out = Path(out_dir)
        with io.output_folder(out) as staging:
            names = self.write(staging)
        return [out / name for name in names]

    def write(self, folder: Path) -> list[str]:
        """Write the files of `save` into `folder`, an existing folder being staged; returns their names."""
        picture = self.plot()
        record = io.json_text({"settings": self.settings, "means": self.means(), "rows": self.rows})
        io.save_text(self.to_csv(), folder / "evaluation.csv")
        io.save_text(record, folder / "evaluation.json")
        if picture is None:
            return ["evaluation.csv", "evaluation.json"]
        io.save_png(picture, folder / "curves.png")
        return ["evaluation.csv", "evaluation.json", "curves.png"]

    def write_image(self, folder: Path) -> list[str]:
        """Write one image's rows into `folder`, being staged: ``evaluation.csv``, and ``evaluation.json``
        with the settings and the curves (which `read_image` reads back to merge images); returns the names."""
        curves = [{"method": method, "metric": metric, "curve": curve, "x": x, "y": y}
                  for (method, metric, curve), entries in self.curves.items() for x, y in entries]
        record = io.json_text({"settings": self.settings, "rows": self.rows, "curves": curves})
        io.save_text(self.to_csv(), folder / "evaluation.csv")
        io.save_text(record, folder / "evaluation.json")
        return ["evaluation.csv", "evaluation.json"]

    @classmethod
    def read_image(cls, folder: str | Path) -> EvaluationTable:
        """The table `write_image` wrote into `folder`."""
        path = Path(folder) / "evaluation.json"
        try:
            record = json.loads(path.read_text())
            table = cls(rows=record["rows"], settings=record["settings"])
            for entry in record["curves"]:
                table.curves[(entry["method"], entry["metric"], entry["curve"])].append(
                    (np.asarray(entry["x"]), np.asarray(entry["y"])))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise OnnxplainError(f"{path} is not an evaluation of one image that onnxplain wrote ({error})") from error
        return table

    def extend(self, other: EvaluationTable) -> None:
        """Add the rows and curves of `other` (another image's) to this table."""
        self.rows.extend(other.rows)
        for key, entries in other.curves.items():
            self.curves[key].extend(entries)


@dataclass(frozen=True)
class EvaluateWork:
    """One image's evaluation, as a dataset engine runs it on a worker's model (picklable).

    Attributes are those of `evaluate`; calling it with a model and an `Item` returns that image's table.
    """

    methods: list[Method]
    metrics: list[Metric]
    target: Target | None = None
    seed: int = 0
    batch_size: int | None = None

    def __call__(self, model: Segmenter, item: Item) -> EvaluationTable:
        table = evaluate(model, [item], methods=self.methods, metrics=self.metrics, target=self.target,
                         seed=self.seed, batch_size=self.batch_size)
        table.curves = dict(table.curves)  # type: ignore[assignment]  # plain data to send back, no lambda
        return table


def evaluate(
    model: Segmenter,
    items: Iterable[Item],
    *,
    methods: list[Method],
    metrics: list[Metric],
    target: Target | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> EvaluationTable:
    """Explain every item with every method and measure each map with every metric.

    Parameters
    ----------
    model : Segmenter
        The model.
    items : iterable of Item
        The images, with optional segments and regions.
    methods : list of Method
        Explanation methods, each with its own score and seed.
    metrics : list of Metric
        Metrics to apply to every map.
    target : Target, optional
        What to explain; the whole class when omitted.
    seed : int
        Seed of the metrics' random choices.
    batch_size : int, optional
        Images per forward pass.
    progress : callable, optional
        Called with 1 after each explanation and its metrics.

    Returns
    -------
    EvaluationTable
    """
    if not methods or not metrics:
        raise OnnxplainError("evaluation needs at least one method and one metric")
    table = EvaluationTable(settings={
        "methods": {m.name: m.parameters() for m in methods},
        "metrics": {m.name: m.parameters() for m in metrics},
        "seed": seed,
        "model": model.describe(),
    })
    for item in items:
        baseline = make_baseline(model, item.image, target, segment=item.segment)  # shared by every method
        for method in methods:

            def explain_map(image: np.ndarray, method: Method = method, item: Item = item) -> np.ndarray:
                return method.attribute(model, image, target, segment=item.segment, batch_size=batch_size).map

            def explain_on(other: Segmenter, image: np.ndarray, method: Method = method,
                           baseline: Baseline = baseline) -> np.ndarray:
                # The same target and reference as the original map, so both explain the same thing.
                return method.attribute(other, image, baseline.target, segment=baseline.reference.mask,
                                        batch_size=batch_size).map

            started = time.perf_counter()
            attribution = method.attribute(model, item.image, target, baseline=baseline, batch_size=batch_size)
            row = {"image": item.name, "method": method.name,
                   "score": attribution.record.get("score", {}).get("name", ""),
                   "explain_seconds": round(time.perf_counter() - started, 3)}
            context = EvaluationContext.from_attribution(
                attribution, model, target=baseline.target, explain=explain_map, explain_on=explain_on,
                masks=item.masks, seed=seed, batch_size=batch_size,
            )
            _measure(table, row, context, attribution.map, metrics)
            if progress is not None:
                progress(1)
    if not table.rows:
        raise OnnxplainError("there were no images to evaluate")
    return table


def evaluate_maps(
    model: Segmenter,
    item: Item,
    maps: dict[str, np.ndarray],
    *,
    metrics: list[Metric],
    target: Target | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> EvaluationTable:
    """Measure maps made earlier (by onnxplain or any other tool) for one image, without explaining.

    Parameters
    ----------
    model : Segmenter
        The model the maps explain.
    item : Item
        The image, with its optional segment and regions.
    maps : dict of str to ndarray, shape (H, W)
        The maps by name; the names become the table's ``method`` column.
    metrics : list of Metric
        Metrics to apply to every map; none may re-run the explanation.
    target : Target, optional
        What the maps explain; the whole class when omitted.
    seed : int
        Seed of the metrics' random choices.
    batch_size : int, optional
        Images per forward pass.
    progress : callable, optional
        Called with 1 after each map.

    Returns
    -------
    EvaluationTable
    """
    if not maps or not metrics:
        raise OnnxplainError("evaluation needs at least one map and one metric")
    rerunning = [m.name for m in metrics if m.reruns_explanation]
    if rerunning:
        raise OnnxplainError(f"{', '.join(rerunning)} re-run the explanation, so they cannot score saved maps; "
                             "leave them out, or evaluate the methods themselves")
    baseline = make_baseline(model, item.image, target, segment=item.segment)
    shape = baseline.image.shape[:2]
    for name, saliency in maps.items():  # every map checked before any metric runs
        check_map(name, saliency, shape)
    table = EvaluationTable(settings={"maps": sorted(maps), "metrics": {m.name: m.parameters() for m in metrics},
                                      "seed": seed, "model": model.describe()})
    context = EvaluationContext(model=model, image=baseline.image, reference=baseline.reference,
                                target=baseline.target, masks=dict(item.masks), seed=seed,
                                batch_size=batch_size or model.batch_size)
    for name, saliency in maps.items():
        _measure(table, {"image": item.name, "method": name}, context, saliency, metrics)
        if progress is not None:
            progress(1)
    return table


def check_map(name: str, saliency: np.ndarray, shape: tuple[int, ...]) -> None:
    """Raise `OnnxplainError`, naming the map, unless `saliency` is a finite real map of `shape`."""
    if saliency.dtype.kind not in "biuf":
        raise OnnxplainError(f"map {name!r} holds {saliency.dtype} values; a map holds real numbers")
    if saliency.shape != tuple(shape):
        raise OnnxplainError(f"map {name!r} is shaped {saliency.shape} but the image is {tuple(shape)} "
                             "(height, width); give a map of the image's size")
    if not np.isfinite(saliency).all():
        raise OnnxplainError(f"map {name!r} contains NaN or infinite values")


def _measure(table: EvaluationTable, row: dict, context: EvaluationContext, saliency: np.ndarray,
             metrics: list[Metric]) -> None:
    """Apply every metric to one map and add its row, curves and notes to `table`."""
    notes: list[str] = []
    for metric in metrics:
        result = metric.evaluate(context, saliency)
        row.update(result.values)
        notes += result.notes
        for curve, points in result.curves.items():
            table.curves[(row["method"], metric.name, curve)].append(points)
    if notes:
        row["notes"] = "; ".join(notes)
    table.rows.append(row)


def dataset_images(folder: str | Path) -> list[Path]:
    """The image files of a dataset folder, sorted (see `onnxplain.datasets.find_images`).

    Raises
    ------
    OnnxplainError
        When the folder is missing, is a file, or holds no images, each said apart.
    """
    return [image.path for image in find_images(folder)]


def read_dataset(folder: str | Path, *, channels: int | None = None) -> Iterator[Item]:
    """Read a dataset folder (see `onnxplain.datasets`): its images, and in onnxplain's layout (what
    `onnxplain testnet generate` writes) their segments and regions.

    ``images/NAME.EXT`` are the images (PNG, JPEG, TIFF, NIfTI...), in subfolders too;
    ``segments/NAME.*`` (optional) the ground-truth segments; ``shapes/REGION/NAME.*`` (optional)
    named regions for the localisation metrics. A segment or region belongs to the image of the
    same relative path and name whatever its format, so JPEG photos can have PNG masks. Without
    ``images/``, every image below the folder, with no segments or regions.

    Parameters
    ----------
    folder : str or Path
        The dataset folder.
    channels : {1, 3}, optional
        Convert images to this many channels.

    Yields
    ------
    Item
    """
    for image in find_images(folder):
        yield image.read(channels=channels)
