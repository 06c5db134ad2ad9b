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
from onnxplain.cli.datasets import check_single_image, engine_options, report, run_dataset

_DEFAULT_METRICS = ("srg", "deletion", "insertion", "infidelity")
_REGION_METRICS = ("pointing-game", "relevance-mass")


@click.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.argument("image_path", metavar="[IMAGE]", required=False, type=click.Path(path_type=Path))
@click.option("--dataset", type=click.Path(path_type=Path), default=None,
              help="A folder of images to evaluate instead of IMAGE (nested folders, PNG, JPEG, 2-D NIfTI; or "
                   "images/ with optional segments/ and shapes/REGION/): one folder per image and the tables of "
                   "all in --out; the same command resumes a run that stopped.")
@click.option("--method", "methods", multiple=True, default=("hdm", "rise"), show_default=True,
              help="Explanation method; repeatable.")
@click.option("--saliency", "saved", multiple=True, type=click.Path(path_type=Path),
              help="Score maps saved earlier instead of running methods: a result folder of explain, a folder "
                   "of them, or .npy maps of IMAGE's height and width (from any tool); repeatable.")
@click.option("-p", "--param", "params", multiple=True, metavar="METHOD:NAME=VALUE",
              help="A parameter of one method, e.g. -p hdm:offset=5; repeatable.")
@click.option("--metric", "metrics", multiple=True,
              help="Metric; repeatable [default: srg, deletion, insertion, infidelity, and pointing-game and "
                   "relevance-mass when regions are given]. max-sensitivity and model-randomisation re-run "
                   "each explanation.")
@click.option("--metric-param", "metric_params", multiple=True, metavar="METRIC:NAME=VALUE",
              help="A parameter of one metric, e.g. --metric-param srg:substrate=road.")
@click.option("--score", default=None, help="Score of the explanations [default: each method's].")
@click.option("--segment", type=click.Path(path_type=Path), default=None, help="Ground-truth segment of IMAGE.")
@click.option("--mask", "masks", multiple=True, metavar="NAME=PNG", help="A named region of IMAGE; repeatable.")
@click.option("--target", default="class", show_default=True, help="What to explain, as for explain.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: onnxplain-eval/IMAGE-or-DATASET].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@engine_options
@model_options
def evaluate(model_path, image_path, dataset, methods, saved, params, metrics, metric_params, score, segment,
             masks, target, out, seed, engine, address, workers, **model_settings):
    """Measure how faithful each method's maps are on IMAGE (or a --dataset) for MODEL.

    Writes evaluation.csv and evaluation.json (one row per image and method, and means per method)
    and curves.png (the pixel-flipping curves of each method against random maps). With --saliency,
    the rows are maps saved earlier, named by their folder or file.
    """
    from onnxplain.evaluation.runner import Item
    from onnxplain.evaluation.runner import evaluate as run_evaluation
    from onnxplain.targets import Target

    if (image_path is None) == (dataset is None):
        raise click.UsageError("give either IMAGE or --dataset DIR")
    if saved:
        _check_saved_options(image_path, params, score)
    if dataset is not None and (segment is not None or masks):
        raise click.UsageError("--segment and --mask belong to one IMAGE; a dataset's are in DIR/segments and "
                               "DIR/shapes/REGION")
    if dataset is None:
        check_single_image(engine, address, workers)
    model = open_model(model_path, model_settings)
    has_regions = bool(masks) or (dataset is not None and (Path(dataset) / "shapes").is_dir())
    metrics = metrics or _DEFAULT_METRICS + (_REGION_METRICS if has_regions else ())
    metric_plugins = [create_plugin("metric", m, scoped(metric_params, m, metrics, "--metric-param"))
                      for m in metrics]
    goal = Target.parse(target).of_class(model_settings["class_index"], model_settings["output"])
    out = out or Path("onnxplain-eval") / (image_path.stem if image_path else Path(dataset).name)
    if dataset is not None:
        _evaluate_dataset(model, model_path, dataset, out, methods=methods, params=params, score=score,
                          metrics=metric_plugins, goal=goal, target=target, seed=seed, engine=engine,
                          address=address, workers=workers, model_settings=model_settings)
        return
    items = [Item(name=image_path.name, image=read_model_image(image_path, model),
                  segment=io.read_mask(segment) if segment else None,
                  masks={name: io.read_mask(path) for name, path in dict(_named_path(t) for t in masks).items()})]
    # Checked before the work, written whole at the end; never over what this run reads.
    with io.output_folder(out, inputs=(model_path, image_path, dataset, segment, *saved,
                                                 *(text.partition("=")[2] for text in masks))) as staging:
        if saved:
            table = _evaluate_saved(model, items[0], saved, metric_plugins, goal, seed, model_settings["batch_size"])
        else:
            scorer = create_plugin("score", score, ()) if score else None
            method_plugins = [create_method(m, scoped(params, m, methods, "--param"), seed=seed, score=scorer)
                              for m in methods]
            with progress_bar(len(method_plugins), "explanations evaluated") as update:
                table = run_evaluation(model, items, methods=method_plugins, metrics=metric_plugins, target=goal,
                                       seed=seed, batch_size=model_settings["batch_size"], progress=update)
        written = table.write(staging)
    _print_means(table)
    click.echo(f"wrote {', '.join(written)} to {out}")


def _evaluate_dataset(model, model_path, dataset, out, *, methods, params, score, metrics, goal, target, seed, engine,
                      address, workers, model_settings) -> None:
    """One folder per image with its rows, then the tables and curves of all images at the top of `out`."""
    from onnxplain.evaluation.runner import EvaluateWork, EvaluationTable

    scorer = create_plugin("score", score, ()) if score else None
    chosen = [create_method(m, scoped(params, m, methods, "--param"), seed=seed, score=scorer) for m in methods]
    settings = {"command": "evaluate", "methods": {m.name: m.parameters() for m in chosen},  # type: ignore[attr-defined]
                "metrics": {m.name: m.parameters() for m in metrics}, "target": target, "seed": seed}

    def write(table, staging, image):
        table.settings["model"]["path"] = str(model_path)  # a Ray worker opened its own copy
        table.write_image(staging)

    summary, images, folder = run_dataset(
        dataset, out, model=model, model_path=model_path, model_settings=model_settings, settings=settings,
        work=EvaluateWork(chosen, metrics, goal, seed, model_settings["batch_size"]),  # type: ignore[arg-type]
        write=write,
        describe=lambda _folder: {}, engine=engine, address=address, workers=workers)
    table = EvaluationTable(settings={"methods": {m.name: m.parameters() for m in chosen},  # type: ignore[attr-defined]
                                      "metrics": {m.name: m.parameters() for m in metrics}, "seed": seed,
                                      "model": model.describe()})
    for image in images:
        if folder.rows.get(image.name, {}).get("status") == "done":
            table.extend(EvaluationTable.read_image(folder.result(image)))
    if table.rows:
        table.write(out)  # over all images, each file replaced atomically
        _print_means(table)
    report(summary, out, "evaluated")


def _print_means(table) -> None:
    for row in table.rows:
        if row.get("notes"):
            click.echo(f"Note ({row['image']}, {row['method']}): {row['notes']}", err=True)
    for method, means in table.means().items():
        shown = ", ".join(f"{k} {v:.3g}" for k, v in means.items() if k != "explain_seconds")
        click.echo(f"{method}: {shown}")
        if "srg_gap" in means:
            click.echo(f"  srg gap {means['srg_gap']:.3f} against random maps' {means['srg_random_gap']:.3f} "
                       f"± {means['srg_random_gap_std']:.3f}: beats them on {means['srg_beats_random']:.0%} of images")


def _check_saved_options(image_path, params, score) -> None:
    """--saliency scores maps of one image: no dataset, and no method to run or configure."""
    context = click.get_current_context()
    if image_path is None:
        raise click.UsageError("--saliency scores maps of one IMAGE: give IMAGE, not --dataset")
    if context.get_parameter_source("methods") is not click.core.ParameterSource.DEFAULT or params or score:
        raise click.UsageError("--saliency scores saved maps instead of running methods: drop --method, -p and --score")


def _evaluate_saved(model, item, saved, metrics, goal, seed, batch_size):
    from onnxplain.evaluation.runner import evaluate_maps
    from onnxplain.evaluation.saved import read_saved_maps

    maps = read_saved_maps(saved)
    with progress_bar(len(maps), "maps evaluated") as update:
        return evaluate_maps(model, item, maps, metrics=metrics, target=goal, seed=seed, batch_size=batch_size,
                             progress=update)


def _named_path(text: str) -> tuple[str, Path]:
    name, separator, path = text.partition("=")
    if not separator or not name:
        raise click.BadParameter(f"{text!r} is not NAME=PNG", param_hint="--mask")
    return name, Path(path)


