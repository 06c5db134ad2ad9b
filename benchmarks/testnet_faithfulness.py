"""How faithful are the built-in methods on testnet? A table for README.

50 fresh testnet samples (25 with a circle, 25 with a square), the bundled model, every built-in
method with its defaults. For each map: relevance mass and density on the target, decider and
distractor shapes and on the background (pixels in no shape), the pointing game on the decider and
the target (Euclidean 15 px), and the symmetric relevance gain: the areas under the
most-relevant-first (MoRF) and least-relevant-first (LeRF) deletion curves of the score relative to
the unperturbed one, on a blur substrate (sigma 5% of the side), and their gap, against the gap of
8 smooth random maps (mean ± standard deviation), with the share of images where the map's gap
beats the random maps' by more than one standard deviation.

Run: python benchmarks/testnet_faithfulness.py [--count 50] [--out benchmarks/results] [--substrate blur]
(about 1.5 minutes per sample on two CPU cores).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from onnxplain import data, testnet
from onnxplain.evaluation import Item, evaluate
from onnxplain.evaluation.localisation import PointingGame, RelevanceMass
from onnxplain.evaluation.srg import SymmetricRelevanceGain
from onnxplain.evaluation.substrate import Substrate
from onnxplain.model import OnnxModel
from onnxplain.registry import plugins

SEED = 20261122  # a dataset seed used neither for training, nor held out, nor for the bundled samples
ROLES = ("target", "decider", "distractor", "background")
BUILT_IN = ("hdm", "rise", "occlusion", "ablation", "lime", "kernel-shap", "shapley")


def balanced_samples(count: int) -> list[testnet.TestnetSample]:
    """The first `count` / 2 samples of each decider shape from the benchmark's seed (an odd count: one more circle)."""
    chosen = {"circle": [], "square": []}
    wanted = {"circle": (count + 1) // 2, "square": count // 2}
    for sample in testnet.generate(10 * count, seed=SEED):
        if len(chosen[sample.decider_shape]) < wanted[sample.decider_shape]:
            chosen[sample.decider_shape].append(sample)
        if sum(map(len, chosen.values())) == count:
            break
    return chosen["circle"] + chosen["square"]


def item(index: int, sample: testnet.TestnetSample) -> Item:
    shapes = dict(sample.shapes)
    shapes["background"] = ~(shapes["target"] | shapes["decider"] | shapes["distractor"])
    return Item(name=f"{index:03d}-{sample.decider_shape}", image=sample.image[:, :, None], masks=shapes)


def markdown(means: dict[str, dict[str, float]], count: int, substrate: str) -> str:
    lines = [
        "| method (score) | relevance mass: target / decider / distractor / background | "
        "per pixel vs image mean: decider / background | pointing game: decider / target | "
        "MoRF AUC ↓ / LeRF AUC ↑ | SRG gap ↑ (random maps) | gap beats random |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, m in means.items():
        mass = " / ".join(f"{m[f'relevance_mass[{r}]']:.2f}" for r in ROLES)
        density = f"{m['relevance_density[decider]']:.1f}× / {m['relevance_density[background]']:.2f}×"
        pointing = f"{m['pointing_game[decider]']:.2f} / {m['pointing_game[target]']:.2f}"
        curves = f"{m['srg_morf_auc']:.3f} / {m['srg_lerf_auc']:.3f}"
        gap = f"{m['srg_gap']:.3f} ({m['srg_random_gap']:.3f} ± {m['srg_random_gap_std']:.3f})"
        lines.append(f"| {method} ({m['score']}) | {mass} | {density} | {pointing} | {curves} | {gap} | "
                     f"{m['srg_beats_random']:.0%} |")
    lines.append(f"\nMeans over {count} testnet samples (seed {SEED}, half circles, half squares); bundled model, "
                 f"each method with its defaults. Curves: score relative to the unperturbed image against the "
                 f"fraction of pixels removed onto the {substrate} substrate; random maps: 8 smooth random maps per "
                 "image (mean ± standard deviation of their gaps); beats random: share of images where the gap "
                 "exceeds the random maps' mean by more than one standard deviation.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    parser.add_argument("--method", dest="methods", action="append",
                        help="a method to evaluate, repeatable [default: every built-in one]")
    parser.add_argument("--substrate", default="blur", help="what removed pixels become: blur, black, mean or road")
    args = parser.parse_args()

    model = OnnxModel(data.testnet_model_path(), device="cpu", batch_size=16)
    samples = balanced_samples(args.count)
    methods = [plugins.create("method", name) for name in args.methods or BUILT_IN]
    metrics = [RelevanceMass(), PointingGame(), SymmetricRelevanceGain(substrate=args.substrate)]
    started = time.perf_counter()
    done = 0

    def progress(count: int) -> None:
        nonlocal done
        done += count
        print(f"{done}/{len(samples) * len(methods)} explanations, {time.perf_counter() - started:.0f} s", flush=True)

    table = evaluate(model, [item(i, s) for i, s in enumerate(samples)], methods=methods, metrics=metrics,
                     seed=0, progress=progress)
    means = table.means()
    for method in means:
        means[method]["score"] = next(r["score"] for r in table.rows if r["method"] == method)
    written = table.save(args.out / "testnet_faithfulness")
    summary = markdown(means, len(samples), Substrate(args.substrate).describe())
    (args.out / "testnet_faithfulness.md").write_text(summary + "\n")
    ratios = {}
    for method in means:
        rows = [r for r in table.rows if r["method"] == method]
        ratios[method] = {
            "decider_over_background_density": float(np.mean(
                [r["relevance_density[decider]"] / max(r["relevance_density[background]"], 1e-12) for r in rows])),
            "srg_gap_beats_random": float(np.mean([r["srg_beats_random"] for r in rows])),
            "srg_gap_positive": float(np.mean([r["srg_gap"] > 0 for r in rows])),
        }
    (args.out / "testnet_faithfulness_summary.json").write_text(json.dumps(ratios, indent=2) + "\n")
    print(summary)
    print(json.dumps(ratios, indent=2))
    print("wrote", *written, args.out / "testnet_faithfulness.md")


if __name__ == "__main__":
    main()
