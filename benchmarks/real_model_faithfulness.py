"""Every method on real pretrained networks: the deletion test (SRG) on a blur substrate, and the
model-randomisation sanity check.

For each real model of `real_models` (and the bundled testnet model), on one real image each:
explain with every built-in method at its defaults (seed 0), then

- SRG: the area between the least- and most-relevant-first deletion curves of the class score on
  a blurred copy of the image (``onnxplain evaluate --metric srg``), beside the same gap for random
  maps (mean and spread of 8); a map "beats random" when its gap clears their mean by one spread;
- sanity (``--sanity``): |Spearman| between the map and the map after every weight of the model
  is re-drawn (Adebayo et al. 2018); below 0.3 passes.

Also the HDM study (``--hdm-study``): HDM's scores and fills, measured the same way.

Run:  python benchmarks/real_model_faithfulness.py [--sanity] [--hdm-study] [--models person,text,testnet]
Writes benchmarks/results/real_model_faithfulness.{json,md} (or hdm_study.*), and the summary
picture of each explanation under benchmarks/results/real_models/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_models  # noqa: E402

from onnxplain import data  # noqa: E402
from onnxplain.api import create_method  # noqa: E402
from onnxplain.evaluation.metric import EvaluationContext  # noqa: E402
from onnxplain.evaluation.randomisation import randomisation_check  # noqa: E402
from onnxplain.method import make_baseline  # noqa: E402
from onnxplain.model import OnnxModel  # noqa: E402
from onnxplain.registry import plugins  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("hdm", "rise", "occlusion", "ablation", "lime", "kernel-shap", "shapley")
IMAGES = {"person": "astronaut", "text": "lines"}
HDM_VARIANTS = {
    "2019: Hausdorff, black": dict(variant="2019"),
    "Hausdorff reference→output, black": dict(variant="2019", score="hausdorff:direction=reference"),
    "95th percentile of pixel distances, black": dict(variant="2019", score="hausdorff:statistic=p95"),
    "mean pixel distance both ways, black": dict(variant="2019", score="hausdorff:statistic=mean"),
    "segment distance, black": dict(fill="black"),
    "Hausdorff, blur": dict(variant="2019", fill="blur"),
    "mean pixel distance both ways, blur": dict(score="hausdorff:statistic=mean"),
    "segment distance, blur (default)": dict(),
}
SANITY_LIMIT = 0.3


def load(name: str) -> tuple[OnnxModel, np.ndarray]:
    """The model and its image."""
    if name == "testnet":
        return OnnxModel(data.testnet_model_path()), data.load_sample(0).image
    model = real_models.MODELS[name]
    return OnnxModel(real_models.fetch(name), **model.onnxplain_options()), real_models.image(IMAGES[name])


def score_plugin(spec: str | None) -> object:
    """A score from ``NAME[:KEY=VALUE]``."""
    if spec is None:
        return None
    name, _, setting = spec.partition(":")
    key, _, value = setting.partition("=")
    return plugins.create("score", name, **({key: value} if key else {}))


def evaluate(model: OnnxModel, image: np.ndarray, label: str, method_name: str, settings: dict, *,
             sanity: bool, pictures: Path | None) -> dict:
    """Explain, score with SRG, and optionally run the sanity check; one table row."""
    settings = dict(settings)
    method = create_method(method_name, seed=0, score=score_plugin(settings.pop("score", None)), **settings)
    baseline = make_baseline(model, image)
    started = time.perf_counter()
    result = method.attribute(model, baseline.image, baseline.target, baseline=baseline)
    seconds = time.perf_counter() - started
    if pictures is not None:
        result.save(pictures)
    context = EvaluationContext.from_attribution(result, model, seed=0)
    srg = plugins.create("metric", "srg").evaluate(context, result.map).values
    row = {"model": label, "method": method_name, **{k: round(v, 4) for k, v in srg.items()},
           "explain_seconds": round(seconds, 1), "forward_passes": len(result.values)}
    if sanity:
        def explain_on(other, picture):
            return method.attribute(other, picture, baseline.target, segment=baseline.reference.mask).map

        check = randomisation_check(model, baseline.image, result.map, explain_on, cascade_steps=0, control=False)
        row["abs_spearman_full"] = round(check.abs_spearman_full, 4)
        row["sanity_note"] = "; ".join(check.notes())
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict], first: str) -> str:
    columns = [first, "MoRF AUC ↓", "LeRF AUC ↑", "gap (SRG) ↑", "random maps' gap", "beats random"]
    sanity = any("abs_spearman_full" in row for row in rows)
    if sanity:
        columns.append("\\|Spearman\\| after full randomisation ↓")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [row[first], f"{row['srg_morf_auc']:.3f}", f"{row['srg_lerf_auc']:.3f}", f"**{row['srg_gap']:.3f}**",
                 f"{row['srg_random_gap']:.3f} ± {row['srg_random_gap_std']:.3f}",
                 "yes" if row["srg_beats_random"] else "no"]
        if sanity:
            value = row.get("abs_spearman_full")
            cells.append("—" if value is None else f"{value:.2f}" + ("" if value < SANITY_LIMIT else " (fails)"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="person,text,testnet")
    parser.add_argument("--sanity", action="store_true", help="also run the model-randomisation check")
    parser.add_argument("--hdm-study", action="store_true", help="compare HDM's scores and fills instead")
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    rows, sections = [], []
    for name in args.models.split(","):
        model, image = load(name)
        if args.hdm_study:
            group = []
            for variant, settings in HDM_VARIANTS.items():
                row = evaluate(model, image, name, "hdm", settings, sanity=False, pictures=None)
                group.append({**row, "variant": variant})
            sections.append(f"**{name}**\n\n{table(group, 'variant')}")
        else:
            group = [evaluate(model, image, name, method, {}, sanity=args.sanity,
                              pictures=RESULTS / "real_models" / name / method) for method in METHODS]
            sections.append(f"**{name}**\n\n{table(group, 'method')}")
        rows += group
    stem = "hdm_study" if args.hdm_study else "real_model_faithfulness"
    (RESULTS / f"{stem}.json").write_text(json.dumps(rows, indent=1) + "\n")
    (RESULTS / f"{stem}.md").write_text("\n\n".join(sections) + "\n")
    print("\n\n".join(sections))


if __name__ == "__main__":
    main()
