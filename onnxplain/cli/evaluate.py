"""``onnxplain evaluate``."""

from __future__ import annotations

from pathlib import Path

import click

from onnxplain import io
from onnxplain.cli.common import (
    create_method,
    create_plugin,
    model_options,
    open_model,
    progress_bar,
    read_model_image,
    scoped,
)

_DEFAULT_METRICS = ("deletion", "insertion", "infidelity")
_REGION_METRICS = ("pointing-game", "relevance-mass")


@click.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.argument("image_path", metavar="[IMAGE]", required=False, type=click.Path(path_type=Path))
@click.option("--dataset", type=click.Path(path_type=Path), default=None,
              help="A folder to evaluate instead of IMAGE: images/, optional segments/ and shapes/REGION/.")
@click.option("--method", "methods", multiple=True, default=("hdm", "rise"), show_default=True,
              help="Explanation method; repeatable.")
@click.option("-p", "--param", "params", multiple=True, metavar="METHOD:NAME=VALUE",
              help="A parameter of one method, e.g. -p hdm:offset=5; repeatable.")
@click.option("--metric", "metrics", multiple=True,
              help="Metric; repeatable [default: deletion, insertion, infidelity, and pointing-game and "
                   "relevance-mass when regions are given]. max-sensitivity re-runs each explanation.")
@click.option("--metric-param", "metric_params", multiple=True, metavar="METRIC:NAME=VALUE",
              help="A parameter of one metric, e.g. --metric-param deletion:substrate=blur.")
@click.option("--score", default=None, help="Score of the explanations [default: each method's].")
@click.option("--segment", type=click.Path(path_type=Path), default=None, help="Ground-truth segment of IMAGE.")
@click.option("--mask", "masks", multiple=True, metavar="NAME=PNG", help="A named region of IMAGE; repeatable.")
@click.option("--target", default="class", show_default=True, help="What to explain, as for explain.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: onnxplain-eval/IMAGE-or-DATASET].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@model_options
def evaluate(model_path, image_path, dataset, methods, params, metrics, metric_params, score, segment, masks,
             target, out, seed, **model_settings):
    """Measure how faithful each method's maps are on IMAGE (or a --dataset) for MODEL.

    Writes evaluation.csv and evaluation.json (one row per image and method, and means per method)
    and curves.png (deletion and insertion curves against a random pixel order).
    """
    from onnxplain.evaluation.runner import Item, read_dataset
    from onnxplain.evaluation.runner import evaluate as run_evaluation
    from onnxplain.targets import Target

    if (image_path is None) == (dataset is None):
        raise click.UsageError("give either IMAGE or --dataset DIR")
    model = open_model(model_path, model_settings)
    channels = model.input.channels if model.input.channels in (1, 3) else None
    if dataset is not None:
        count = len(list((Path(dataset) / "images").glob("*.png")))
        items = read_dataset(dataset, channels=channels)
    else:
        regions = dict(_named_path(text) for text in masks)
        items = [Item(name=image_path.name, image=read_model_image(image_path, model),
                      segment=io.read_mask(segment) if segment else None,
                      masks={name: io.read_mask(path) for name, path in regions.items()})]
        count = 1
    has_regions = bool(masks) or (dataset is not None and (Path(dataset) / "shapes").is_dir())
    metrics = metrics or _DEFAULT_METRICS + (_REGION_METRICS if has_regions else ())
    scorer = create_plugin("score", score, ()) if score else None
    method_plugins = [create_method(m, scoped(params, m, methods, "--param"), seed=seed, score=scorer)
                      for m in methods]
    metric_plugins = [create_plugin("metric", m, scoped(metric_params, m, metrics, "--metric-param"))
                      for m in metrics]
    with progress_bar(count * len(method_plugins), "explanations evaluated") as update:
        goal = Target.parse(target).of_class(model_settings["class_index"], model_settings["output"])
        table = run_evaluation(model, items, methods=method_plugins, metrics=metric_plugins, target=goal,
                               seed=seed, batch_size=model_settings["batch_size"], progress=update)
    out = out or Path("onnxplain-eval") / (image_path.stem if image_path else Path(dataset).name)
    written = table.save(out)
    for method, means in table.means().items():
        shown = ", ".join(f"{k} {v:.3g}" for k, v in means.items() if k != "explain_seconds")
        click.echo(f"{method}: {shown}")
    click.echo(f"wrote {', '.join(p.name for p in written)} to {out}")


def _named_path(text: str) -> tuple[str, Path]:
    name, separator, path = text.partition("=")
    if not separator or not name:
        raise click.BadParameter(f"{text!r} is not NAME=PNG", param_hint="--mask")
    return name, Path(path)


