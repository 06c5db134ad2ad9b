"""Explain a model of your own, for a region of interest: export it from PyTorch, ask about a box.

The model here is a small PyTorch network, built in a few lines so that the example runs anywhere:
it segments bright pixels, but only where the image's left half is bright on average (a "decider"
elsewhere in the image, as in onnxplain's testnet). Replace it with your own module and input shape.

Run:  python examples/explain_your_model.py [--out DIR]   (needs the torch extra: pip install -e ".[torch]")
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from onnxplain_torch.export import export_module

import onnxplain


class GatedBrightness(torch.nn.Module):
    """Logit of "bright here, and the left half is bright on average"."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        left = image[..., : image.shape[-1] // 2].mean(dim=(1, 2, 3), keepdim=True)
        return 10 * (image.mean(dim=1, keepdim=True) - 0.5) + 60 * (left - 0.15)


def scene() -> np.ndarray:
    """A 64x96 grey image: a bright patch on the left (the decider), a bright square on the right."""
    image = np.zeros((64, 96, 1), np.float32)
    image[20:44, 8:32] = 1.0  # the decider
    image[24:40, 64:80] = 0.6  # what the model segments, because of the decider
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("onnxplain-example-roi"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    # 1. Export: ONNX with a dynamic batch axis, checked against PyTorch before the file is written.
    path = args.out.parent / "gated.onnx"
    export_module(GatedBrightness().eval(), torch.zeros(1, 1, 64, 96), path)

    # 2. Explain one region: why is the box around the right-hand square segmented?
    model = onnxplain.OnnxModel(path)
    target = onnxplain.Target.box(60, 20, 84, 44)  # x0, y0, x1, y1 in pixels
    result = onnxplain.explain(model, scene(), method="occlusion", target=target, window=8, stride=4)
    result.save(args.out / "explanation")

    # 3. Read the answer: the decider on the left should carry relevance, the empty background none.
    decider = result.map[20:44, 8:32].mean()
    background = result.map[50:, 40:60].mean()
    print(f"mean relevance: decider {decider:.4f}, background {background:.4f}")
    print(f"wrote {args.out / 'explanation'}/summary.png")


if __name__ == "__main__":
    main()
