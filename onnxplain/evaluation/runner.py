"""Explain images with several methods, measure every map with several metrics, tabulate and plot."""

from __future__ import annotations

import csv
import io as text_io
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
from onnxplain.errors import OnnxplainError
from onnxplain.evaluation.metric import EvaluationContext, Metric
from onnxplain.method import Method, make_baseline
from onnxplain.segmenter import Segmenter
from onnxplain.targets import Target


@dataclass(frozen=True)
class Item:
    """One image to evaluate on.

    Attributes
    ----------
    name : str
        Its name in the table.
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
        """Mean deletion/insertion curves per method, against the random order; None without curves."""
        metrics = sorted({metric for _, metric, _ in self.curves})
        if not metrics:
            return None
        figure = Figure(figsize=(5.5 * len(metrics), 4), dpi=100)
        methods = sorted({m for m, _, _ in self.curves})
        colours = {method: f"C{i % 10}" for i, method in enumerate(methods)}  # matplotlib's 10-colour cycle
        for index, metric in enumerate(metrics):
            axes = figure.add_subplot(1, len(metrics), index + 1)
            baseline_drawn = False
            for (method, name, curve), entries in sorted(self.curves.items()):
                if name != metric:
                    continue
                x, y = entries[0][0], np.mean([values for _, values in entries], axis=0)
                if curve.startswith("random"):
                    # The random order depends on the image and the seed only: one line says it all.
                    if not baseline_drawn:
                        axes.plot(x, y, color="gray", linestyle="--", label="random order")
                        baseline_drawn = True
                    continue
                axes.plot(x, y, color=colours[method], label=f"{method}, {curve}")
            axes.set_title(f"{metric} (mean of {len(entries)} image(s))")
            axes.set_xlabel("fraction of pixels " + ("revealed" if metric == "insertion" else "removed"))
            axes.set_ylabel("score")
            axes.set_ylim(-0.02, 1.02)
            axes.legend(fontsize=8)
        figure.tight_layout()
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``evaluation.csv``, ``evaluation.json`` (rows, means per method, settings) and ``curves.png``."""
        out = Path(out_dir)
        picture = self.plot()
        with io.atomic_write(out / "evaluation.csv", "w") as stream:
            stream.write(self.to_csv())
        written = [out / "evaluation.csv"]
        record = {"settings": self.settings, "means": self.means(), "rows": self.rows}
        written.append(io.save_json(record, out / "evaluation.json"))
        if picture is not None:
            written.append(io.save_png(picture, out / "curves.png"))
        return written


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

            started = time.perf_counter()
            attribution = method.attribute(model, item.image, target, baseline=baseline, batch_size=batch_size)
            row = {"image": item.name, "method": method.name,
                   "score": attribution.record.get("score", {}).get("name", ""),
                   "explain_seconds": round(time.perf_counter() - started, 3)}
            context = EvaluationContext.from_attribution(
                attribution, model, target=baseline.target, explain=explain_map, masks=item.masks, seed=seed,
                batch_size=batch_size,
            )
            for metric in metrics:
                result = metric.evaluate(context, attribution.map)
                row.update(result.values)
                for curve, points in result.curves.items():
                    table.curves[(method.name, metric.name, curve)].append(points)
            table.rows.append(row)
            if progress is not None:
                progress(1)
    if not table.rows:
        raise OnnxplainError("there were no images to evaluate")
    return table


def read_dataset(folder: str | Path, *, channels: int | None = None) -> Iterator[Item]:
    """Read a folder in onnxplain's dataset layout (what `onnxplain testnet generate` writes).

    ``images/NAME`` are the images; ``segments/NAME`` (optional) the ground-truth segments;
    ``shapes/REGION/NAME`` (optional) named regions for the localisation metrics.

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
    folder = Path(folder)
    images = sorted((folder / "images").glob("*.png")) if (folder / "images").is_dir() else []
    if not images:
        raise OnnxplainError(f"{folder} has no images/*.png; a dataset folder holds images/, and optionally "
                             "segments/ and shapes/REGION/ with the same file names")
    regions = sorted(p for p in (folder / "shapes").glob("*") if p.is_dir()) if (folder / "shapes").is_dir() else []
    for path in images:
        segment = folder / "segments" / path.name
        masks = {region.name: io.read_mask(region / path.name) for region in regions if (region / path.name).is_file()}
        yield Item(
            name=path.name,
            image=io.read_image(path, channels=channels),
            segment=io.read_mask(segment) if segment.is_file() else None,
            masks=masks,
        )
