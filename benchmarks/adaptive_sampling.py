"""Adaptive RISE: how many masks it saves, and how close its map stays to the map of the whole budget.

RISE with ``converge=C`` stops at the first checkpoint (every 100 masks, from 200) where its
split-half estimate says the map correlates C with the converged one
(`onnxplain.perturbation.convergence`). Against the map of the whole budget (the same seed, all
masks), per image: masks used and Pearson correlation. Testnet: bundled samples 0-9, budget 4000
masks; the real models of `real_models.py` on their test images, budget 2000.

Run:  python benchmarks/adaptive_sampling.py   (about 15 minutes on 2 cores)
Writes benchmarks/results/adaptive_sampling.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_models  # noqa: E402

import onnxplain  # noqa: E402
from onnxplain import data  # noqa: E402
from onnxplain.model import OnnxModel  # noqa: E402

TARGETS = (0.95, 0.97)


def cases() -> list[tuple[str, OnnxModel, np.ndarray, int]]:
    testnet = OnnxModel(data.testnet_model_path())
    found = [(f"testnet {i}", testnet, data.load_sample(i).image, 4000) for i in range(10)]
    for name, image in (("text", "lines"), ("person", "astronaut")):
        spec = real_models.MODELS[name]
        model = OnnxModel(real_models.fetch(name, check_parity=False), **spec.onnxplain_options())
        found.append((f"{name} ({image})", model, real_models.image(image), 2000))
    return found


def main() -> None:
    rows = []
    for label, model, image, budget in cases():
        started = time.perf_counter()
        full = onnxplain.create_method("rise", n_masks=budget).attribute(model, image).map.ravel()
        row = [label, budget]
        for target in TARGETS:
            attr = onnxplain.create_method("rise", n_masks=budget, converge=target).attribute(model, image)
            used = attr.record["convergence"]["masks_used"]
            row += [used, float(np.corrcoef(attr.map.ravel(), full)[0, 1])]
        rows.append(row)
        print(label, row[2:], f"({time.perf_counter() - started:.0f} s)", flush=True)
    head = " | ".join(f"converge {t}: masks (share) | Pearson with the whole budget" for t in TARGETS)
    lines = [f"| image | budget | {head} |", "|---|---|" + "---|---|" * len(TARGETS)]
    for row in rows:
        cells = " | ".join(f"{row[2 + 2 * k]} ({row[2 + 2 * k] / row[1]:.0%}) | {row[3 + 2 * k]:.3f}"
                           for k in range(len(TARGETS)))
        lines.append(f"| {row[0]} | {row[1]} | {cells} |")
    testnet = [r for r in rows if r[0].startswith("testnet")]
    for k, target in enumerate(TARGETS):
        share = np.mean([r[2 + 2 * k] / r[1] for r in testnet])
        pearson = [r[3 + 2 * k] for r in testnet]
        lines.append(f"\nTestnet, converge {target}: mean share of the budget {share:.0%}, Pearson mean "
                     f"{np.mean(pearson):.3f}, lowest {min(pearson):.3f}.")
    out = Path(__file__).resolve().parent / "results" / "adaptive_sampling.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
