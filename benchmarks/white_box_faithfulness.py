"""Which gradient methods find testnet's decider? Pooled decider/background relevance on 10 samples.

For each gradient method (through the PyTorch twin), on the first 10 bundled testnet samples: the
decider's positive relevance per pixel over the background's, pooled over the samples, as in
`activation_layers.py`, and over the distractor shape's (which the model ignores). Testnet's
background is black, so methods that multiply by ``x - x0`` from a black baseline (Integrated
Gradients, DeepLIFT) give it exactly 0; the distractor, drawn like the decider, is the fair
comparison for them. CAM methods are read at the default layer (the last, 240x240, which the
head reads), at the bottleneck and at the 120x120 decoder layer; the score is the class
probability averaged over the segment, or its logit (`logit=True`).

Run:  python benchmarks/white_box_faithfulness.py   (about 5 minutes on 2 cores)
Writes benchmarks/results/white_box_faithfulness.md.
"""

from __future__ import annotations

import time
from pathlib import Path

from activation_layers import relevance_per_pixel

from onnxplain import OnnxModel, data

ROWS = (
    ("saliency", {}, "gradient magnitude, max over channels"),
    ("smoothgrad", {}, "25 noisy copies, 15 % noise"),
    ("integrated-gradients", {"steps": 64}, "black baseline, 64 steps"),
    ("integrated-gradients", {"steps": 64, "logit": True}, "black baseline, 64 steps, logit"),
    ("deeplift", {}, "black baseline, rescale rule"),
    ("grad-cam", {}, "default layer relu_18 (240×240)"),
    ("grad-cam", {"logit": True}, "relu_18, logit"),
    ("grad-cam", {"layer": "relu_16", "logit": True}, "relu_16 (120×120), logit"),
    ("grad-cam", {"layer": "relu_9", "logit": True}, "bottleneck relu_9 (15×15), logit"),
    ("grad-cam++", {"logit": True}, "relu_18, logit"),
    ("grad-cam++", {"layer": "relu_9", "logit": True}, "bottleneck relu_9, logit"),
    ("guided-grad-cam", {"logit": True}, "relu_18, logit"),
    ("guided-grad-cam", {"layer": "relu_9", "logit": True}, "bottleneck relu_9, logit"),
)


def ratios(model: OnnxModel, method: str, params: dict, samples: list) -> tuple[float, float]:
    """Pooled positive relevance per pixel on the decider over that on the background, and over the distractor's."""
    density = relevance_per_pixel(model, method, params, samples)
    return (density["decider"] / max(density["background"], 1e-12),
            density["decider"] / max(density["distractor"], 1e-12))


def _ratio(value: float) -> str:
    return "∞ (0 outside the shapes)" if value > 1e6 else f"{value:.1f}×"


def main() -> None:
    model = OnnxModel(data.testnet_model_path())
    samples = [data.load_sample(i) for i in range(10)]
    lines = ["| method | settings | decider / background | decider / distractor | finds the decider (≥ 3× both) |",
             "|---|---|---|---|---|"]
    for method, params, settings in ROWS:
        started = time.perf_counter()
        background, distractor = ratios(model, method, params, samples)
        found = "yes" if min(background, distractor) >= 3 else "**no**"
        lines.append(f"| {method} | {settings} | {_ratio(background)} | {_ratio(distractor)} | {found} |")
        print(lines[-1], f"({time.perf_counter() - started:.0f} s)", flush=True)
    out = Path(__file__).resolve().parent / "results" / "white_box_faithfulness.md"
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
