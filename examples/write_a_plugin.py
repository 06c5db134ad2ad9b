"""Write a method of your own: a perturbation method is a mask source and a few lines.

This one hides horizontal stripes of the image, one at a time, and reports for each pixel how
much hiding its stripe moved the model's output (the occluded-mean aggregator, as in occlusion).
It is used here directly; to make it a plugin that ``onnxplain explain --method stripes`` finds,
put it in a package with an entry point in the ``onnxplain.methods`` group, as ``plugins/`` does.

Run:  python examples/write_a_plugin.py
"""

from __future__ import annotations

from typing import Any

import numpy as np

import onnxplain
from onnxplain import data
from onnxplain.perturbation.engine import PerturbationMethod
from onnxplain.perturbation.masks import MaskSource


class StripeMasks(MaskSource):
    """One mask per stripe of `height` rows: 1 keeps a pixel, 0 hides it."""

    def __init__(self, spatial: tuple[int, ...], height: int):
        super().__init__(spatial)
        self.height = height
        self.starts = np.arange(0, spatial[0], height)

    def __len__(self) -> int:
        return len(self.starts)

    def _masks(self, start: int, stop: int) -> np.ndarray:
        masks = np.ones((stop - start, *self.spatial), np.float32)
        for mask, row in zip(masks, self.starts[start:stop], strict=True):
            mask[row:row + self.height] = 0.0
        return masks


class Stripes(PerturbationMethod):
    """Hide one horizontal stripe of `height` pixels at a time.

    Parameters
    ----------
    height : int
        Rows per stripe.
    **options
        fill, blur_sigma, channel, score, aggregator, seed: see `PerturbationMethod`.
    """

    name = "stripes"
    default_score = "class-score"
    default_aggregator = "occluded-mean"

    def __init__(self, *, height: int = 12, **options: Any):
        super().__init__(**options)
        self.height = height

    def mask_source(self, image: np.ndarray) -> StripeMasks:
        return StripeMasks(image.shape[:-1], self.height)


def main() -> None:
    model = onnxplain.OnnxModel(data.testnet_model_path())
    sample = data.load_sample(0)
    result = Stripes(height=12).attribute(model, sample.image)
    rows = result.map.mean(axis=1)
    print(f"{len(result.values)} stripes; the most relevant rows are {np.argmax(rows)} "
          f"(the decider shape spans rows {np.flatnonzero(sample.shapes['decider'].any(axis=1))[[0, -1]].tolist()})")


if __name__ == "__main__":
    main()
