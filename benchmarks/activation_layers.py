"""Which layer lets the activation methods find testnet's decider? A sweep over the U-Net's layers.

For each layer and activation method, on the first 10 bundled testnet samples: the decider's
positive relevance per pixel over the background's, pooled over the samples (the CI quality test
asks 3x of every default method).

Run:  python benchmarks/activation_layers.py   (about a minute on 2 cores)
Writes benchmarks/results/activation_layers.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onnxplain import OnnxModel, data, explain

METHODS = ("eigen-cam", "score-cam", "ablation-cam")
LAYERS = {
    "relu_7": "encoder, 30×30",
    "relu_9": "bottleneck, 15×15 (b)",
    "add_250": "bottleneck plus its Add, 15×15",
    "relu_12": "decoder, 30×30",
    "relu_14": "decoder, 60×60",
    "relu_16": "decoder, 120×120",
    "relu_18": "last, 240×240 (default)",
}


def relevance_per_pixel(model: OnnxModel, method: str, params: dict, samples: list) -> dict[str, float]:
    """Positive relevance per pixel of `method` with `params`, pooled over the samples, on the decider,
    the distractor and the background (what is no shape)."""
    sums = {"decider": 0.0, "distractor": 0.0, "background": 0.0}
    pixels = dict.fromkeys(sums, 0)
    for sample in samples:
        relevance = np.maximum(explain(model, sample.image, method=method, **params).map, 0)
        shapes = sample.shapes
        regions = {"decider": shapes["decider"], "distractor": shapes["distractor"],
                   "background": ~(shapes["decider"] | shapes["target"] | shapes["distractor"])}
        for name, region in regions.items():
            sums[name] += float(relevance[region].sum())
            pixels[name] += int(region.sum())
    return {name: sums[name] / pixels[name] for name in sums}


def decider_ratio(model: OnnxModel, method: str, params: dict, samples: list) -> float:
    """Pooled positive relevance per pixel on the decider over that on the background."""
    density = relevance_per_pixel(model, method, params, samples)
    return density["decider"] / max(density["background"], 1e-12)


def main() -> None:
    model = OnnxModel(data.testnet_model_path())
    samples = [data.load_sample(i) for i in range(10)]
    lines = ["| layer | " + " | ".join(METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    for layer, where in LAYERS.items():
        ratios = [decider_ratio(model, method, {"layer": layer}, samples) for method in METHODS]
        lines.append(f"| `{layer}` ({where}) | " + " | ".join(f"{r:.1f}×" for r in ratios) + " |")
        print(lines[-1], flush=True)
    out = Path(__file__).resolve().parent / "results" / "activation_layers.md"
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
