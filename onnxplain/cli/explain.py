"""``onnxplain explain`` and ``onnxplain demo``."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import click
import numpy as np

from onnxplain import io, render
from onnxplain.cli.common import (
    create_method,
    create_plugin,
    floats,
    method_params,
    model_options,
    open_model,
    progress_bar,
    read_model_image,
    result_bytes,
)
from onnxplain.cli.datasets import check_single_image, engine_options, report, run_dataset
from onnxplain.errors import OnnxplainError
from onnxplain.model import DEVICES, OnnxModel
from onnxplain.registry import plugins
from onnxplain.volumes import INTENSITIES, Volume, geometry, normalise_intensity, read_volume


@click.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.argument("image_path", metavar="[IMAGE]", required=False, type=click.Path(path_type=Path))
@click.option("--dataset", type=click.Path(path_type=Path), default=None,
              help="A folder of images to explain instead of IMAGE (nested folders, PNG, JPEG, 2-D NIfTI; or "
                   "images/ with segments/): one result folder per image and results.csv in --out; the same "
                   "command resumes a run that stopped.")
@click.option("--segment", type=click.Path(path_type=Path), default=None,
              help="Ground-truth segment (an image, non-zero = in the segment) [default: the model's own prediction].")
@click.option("--method", "methods", multiple=True, default=("hdm",), show_default=True,
              help="Method: hdm, rise, occlusion, ablation, lime, kernel-shap, shapley, or any installed one "
                   "(see `onnxplain plugins`); repeatable, and several share the unperturbed forward pass.")
@click.option("-p", "--param", "params", multiple=True, metavar="[METHOD:]NAME=VALUE",
              help="A parameter of the method, e.g. -p offset=5; with several methods, -p hdm:offset=5.")
@click.option("--score", default=None,
              help="Score: hausdorff, dice, class-score, or an installed one [default: the method's].")
@click.option("--score-param", "score_params", multiple=True, metavar="NAME=VALUE", help="A parameter of the score.")
@click.option("--target", default="class", show_default=True,
              help="What to explain: class, mask:PATH, box:X0,Y0,X1,Y1 or pixels:X,Y;X,Y.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: onnxplain-out/IMAGE-METHOD, or DATASET-METHOD]; with several methods, one "
                   "subfolder each.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of every random choice.")
@click.option("--per-pixel-max", is_flag=True,
              help="For RISE: also merge the per-pixel maps by their maximum (rise_max.npy, rise_max.png); "
                   "the same as -p per_pixel_max=true.")
@click.option("--color-map", default="jet", show_default=True, help="Matplotlib colormap of the pictures.")
@click.option("--intensity", type=click.Choice(INTENSITIES), default="none", show_default=True,
              help="For volumes: how scanner values become the model's input, from the unperturbed volume's "
                   "statistics: zscore (MRI), percentile (clip and scale to [0, 1]), window (CT, see --window).")
@click.option("--percentiles", default="0.5,99.5", show_default=True, metavar="LOW,HIGH",
              help="For --intensity percentile: the percentiles clipped to.")
@click.option("--window", "ct_window", default=None, metavar="LEVEL,WIDTH",
              help="For --intensity window: the CT window in the volume's units, e.g. 40,400 (soft tissue).")
@click.option("--spacing", default=None, metavar="I,J,K",
              help="For .npy volumes: the voxel size in millimetres [default: 1,1,1]; NIfTI headers give it.")
@engine_options
@model_options
def explain(model_path, image_path, dataset, segment, methods, params, score, score_params, target, out, seed,
            per_pixel_max, color_map, intensity, percentiles, ct_window, spacing, engine, address, workers,
            **model_settings):
    """Explain which pixels of IMAGE (or of every image of a --dataset) made MODEL (an .onnx file) segment
    what it segmented.

    IMAGE is a picture or a 2-D NIfTI slice for a 2-D model, and a volume (.nii, .nii.gz or .npy) for a
    3-D model: its maps are then also written as NIfTI with the volume's affine and header, and
    distances are measured in millimetres."""
    from onnxplain.method import make_baseline
    from onnxplain.targets import Target

    if (image_path is None) == (dataset is None):
        raise click.UsageError("give either IMAGE or --dataset DIR")
    if per_pixel_max:
        if "rise" not in methods:
            raise OnnxplainError("--per-pixel-max is an option of RISE; add --method rise")
        params = (*params, "rise:per_pixel_max=true" if len(methods) > 1 else "per_pixel_max=true")
    if dataset is not None:
        if segment is not None:
            raise click.UsageError("--segment is the segment of one IMAGE; a dataset's are DIR/segments/NAME")
        _explain_dataset(model_path, dataset, methods, params, score, score_params, target, out, seed, color_map,
                         engine, address, workers, model_settings)
        return
    check_single_image(engine, address, workers)
    model = open_model(model_path, model_settings)
    volume = None
    if len(model.input.spatial) == 3:
        volume, image, volume_intensity = _read_volume(image_path, spacing, intensity, percentiles, ct_window)
    else:
        if intensity != "none" or spacing is not None:
            raise OnnxplainError("--intensity and --spacing are options of volumes, and this model takes 2-D images")
        image = read_model_image(image_path, model)
    ground_truth = io.read_mask(segment) if segment is not None else None
    scorer = create_plugin("score", score, score_params) if score else None
    chosen = [create_method(name, method_params(params, name, methods), seed=seed, score=scorer)
              for name in methods]
    goal = Target.parse(target).of_class(model_settings["class_index"], model_settings["output"])
    baseline = make_baseline(model, image, goal, segment=ground_truth,
                             spacing=None if volume is None else volume.spacing)
    totals = [method.count(baseline.image) or 0 for method in chosen]  # every method's masks, checked before any runs
    stem = _stem(image_path)
    base_out = out or Path("onnxplain-out") / (f"{stem}-{methods[0]}" if len(methods) == 1 else stem)
    extra = {"image_file": str(image_path), "segment_file": str(segment) if segment else None}
    lines = []
    with io.output_folder(base_out, needed_bytes=result_bytes(baseline.image, len(methods)),
                          inputs=(model_path, image_path, segment)) as staging:
        for name, method, total in zip(methods, chosen, totals, strict=True):
            with progress_bar(total, f"{name} ({total} images)" if total else name) as update:
                result = method.attribute(model, baseline.image, goal, baseline=baseline,
                                          batch_size=model_settings["batch_size"], progress=update)
            if volume is not None:
                result.record["volume"] = {**geometry(volume), "intensity": volume_intensity}
            single = len(methods) == 1
            folder = staging if single else staging / name
            folder.mkdir(exist_ok=True)
            written = result.write(folder, color_map=color_map, extra=extra)
            seconds = result.seconds
            basis = (f"layer {result.record['layer']['name']}" if "layer" in result.record
                     else result.record.get("score", {}).get("name", "its score"))
            if "twin" in result.record:  # a gradient method: forward and backward passes in PyTorch
                work = f"{len(result.values)} passes through the PyTorch twin in {seconds['total']:.1f} s"
            else:
                probes = result.record.get("convergence", {}).get("probes", 0)  # coarse-to-fine's block probes
                work = (f"{len(result.values) + probes} perturbed images in {seconds['total']:.1f} s "
                        f"(inference {seconds.get('inference', 0.0):.1f} s on {model.device})")
                if "convergence" in result.record:  # an adaptive run: say where it stopped
                    run = result.record["convergence"]
                    if run.get("rule") == "coarse-to-fine":
                        work += (f", refined coarse-to-fine: {run['masks_used']} of {run['masks_available']} positions "
                                 f"and {probes} block probes")
                    elif run["masks_used"] < run["masks_available"]:
                        work += f", converged after {run['masks_used']} of {run['masks_available']} masks"
                    else:
                        work += f", not converged to {run['target']} within {run['masks_available']} masks"
            if "patches" in result.record:  # a volume run patch by patch: what reusing patches saved
                patches = result.record["patches"]
                work += (f", {patches['run']} patch passes run and {patches['reused']} reused "
                         f"({100 * patches['passes_saved']:.0f}% saved)")
            where = base_out if single else base_out / name
            lines.append(f"{name} with {basis}: {work}; {len(written)} files in {where}")
    click.echo("\n".join(lines))


def _read_volume(path: Path, spacing: str | None, intensity: str, percentiles: str, window: str | None
                 ) -> tuple[Volume, np.ndarray, dict]:
    """The volume at `path`, its voxels normalised as asked (channels last), and what was done."""
    def numbers(text: str, option: str, count: int) -> tuple[float, ...]:
        values = floats(text, option)
        if len(values) != count:
            raise click.BadParameter(f"give {count} numbers separated by commas, got {text!r}", param_hint=option)
        return tuple(values)

    volume = read_volume(path, spacing=None if spacing is None else numbers(spacing, "--spacing", 3))
    low, high = numbers(percentiles, "--percentiles", 2)
    level_width = None if window is None else numbers(window, "--window", 2)
    if (intensity == "window") != (level_width is not None):
        raise click.BadParameter("--window goes with --intensity window, and that needs --window LEVEL,WIDTH",
                                 param_hint="--window")
    voxels, done = normalise_intensity(volume.array, intensity, percentiles=(low, high), window=level_width)
    return volume, voxels[..., None], done


def _stem(path: Path) -> str:
    """The file name without its suffixes of image and volume files (``brain.nii.gz`` gives ``brain``)."""
    name = path.name
    return name[:-len(".nii.gz")] if name.lower().endswith(".nii.gz") else path.stem


def _explain_dataset(model_path, dataset, methods, params, score, score_params, target, out, seed, color_map,
                     engine, address, workers, model_settings):
    from onnxplain.datasets import ExplainWork, write_files
    from onnxplain.targets import Target

    model = open_model(model_path, model_settings)
    channels = model.input.channels if model.input.channels in (1, 3) else None
    scorer = create_plugin("score", score, score_params) if score else None
    chosen = [create_method(name, method_params(params, name, methods), seed=seed, score=scorer)
              for name in methods]
    goal = Target.parse(target).of_class(model_settings["class_index"], model_settings["output"])
    out = out or Path("onnxplain-out") / (f"{dataset.name}-{methods[0]}" if len(methods) == 1 else dataset.name)
    settings = {"command": "explain", "methods": {m.name: m.parameters() for m in chosen}, "target": target,
                "seed": seed, "color_map": color_map}

    def read(image):
        found = image.segment_file()
        return image.read(channels=channels), {"image_file": str(image.path),
                                               "segment_file": str(found) if found else None}

    summary, _, _ = run_dataset(
        dataset, out, model=model, model_path=model_path, model_settings=model_settings, settings=settings,
        work=ExplainWork(chosen, goal, model_settings["batch_size"], color_map, str(model_path)), read=read,
        write=lambda files, staging, _image: write_files(files, staging),
        describe=functools.partial(_describe, methods=methods), engine=engine, address=address, workers=workers)
    report(summary, out, "explained")


def _describe(folder: Path, *, methods: tuple[str, ...]) -> dict:
    """An image's columns in results.csv: each method's evaluations and seconds, from its explanation.json."""
    row = {}
    for name in methods:
        record = json.loads(((folder if len(methods) == 1 else folder / name) / "explanation.json").read_text())
        row[f"{name}_evaluations"] = record.get("evaluations")
        row[f"{name}_seconds"] = record.get("seconds", {}).get("total")
    return row


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("onnxplain-demo"), show_default=True,
              help="Output folder.")
@click.option("--sample", type=click.IntRange(min=0), default=0, show_default=True, help="Bundled sample to explain.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
def demo(out, sample, device, batch_size):
    """Explain a bundled testnet sample with HDM and RISE and write the pictures."""
    from onnxplain import data
    from onnxplain.method import make_baseline

    model = OnnxModel(data.testnet_model_path(), device=device, batch_size=batch_size)
    chosen = data.load_sample(sample)
    baseline = make_baseline(model, chosen.image)
    pictures = [render.picture(chosen.image), render.mask_overlay(chosen.image, baseline.output.mask[0])]
    titles = [f"sample {sample} (decider: {chosen.decider_shape})", "model's segment"]
    with io.output_folder(out, needed_bytes=result_bytes(chosen.image[..., None], 3)) as staging:
        for name in ("hdm", "rise"):
            method = plugins.create("method", name)  # each method with its defaults
            total = method.count(baseline.image)
            with progress_bar(total, f"{name} ({total} images)" if total else name) as update:
                result = method.attribute(model, baseline.image, baseline=baseline, progress=update)
            (staging / name).mkdir()
            result.write(staging / name, extra={"sample": sample})
            pictures.append(render.overlay(result.image, result.map, segment=result.segment, region=result.region))
            titles.append(f"{name} ({result.record['score']['name']})")
        io.save_png(render.grid(pictures, titles, columns=4), staging / "demo.png")
    click.echo(f"wrote {out / 'demo.png'} and the maps of each method in {out}/hdm and {out}/rise")
