"""The 2019 ``interpret_segmentation.rise`` API: `SegmentationRISE` and `RISEResult`.

``generate_masks(N, s, p1, savepath)``, ``load_masks``, ``explainer(image)``, ``result.max()``,
``result.mean()``; the model is an ONNX file or an `OnnxModel`. See `onnxplain.perturbation.rise`
for how the maps differ from 2019's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onnxplain.attribution import Attribution
from onnxplain.compat.hdm import channels_last
from onnxplain.errors import OnnxplainError
from onnxplain.method import Progress
from onnxplain.model import OnnxModel, load_model
from onnxplain.perturbation.rise import Rise
from onnxplain.targets import Target


class RISEResult:
    """The maps of a RISE explanation, in the 2019 API.

    Parameters
    ----------
    attribution : Attribution
        Made by the ``rise`` method with ``per_pixel_max=True``.
    """

    def __init__(self, attribution: Attribution):
        self.attribution = attribution

    def mean(self) -> np.ndarray:
        """The per-pixel maps merged by their mean: the class-score RISE map of the region."""
        return self.attribution.map

    def max(self) -> np.ndarray:
        """The per-pixel maps merged by their maximum (see `onnxplain.perturbation.rise.per_pixel_maps_max`)."""
        return self.attribution.arrays["rise_max"]


class SegmentationRISE:
    """The 2019 RISE explainer: ``explainer = SegmentationRISE(model, (240, 240))``.

    Parameters
    ----------
    model : OnnxModel, str or Path
        The model, or its ``.onnx`` file (loaded on `device`).
    input_size : tuple of int
        Image width and height.
    device : {'auto', 'cpu', 'cuda'}
        Where to run a model given as a path.
    batch_size : int
        Perturbed images per forward pass.
    """

    def __init__(
        self, model: OnnxModel | str | Path, input_size: tuple[int, int], device: str = "auto", batch_size: int = 16
    ):
        if not isinstance(model, (OnnxModel, str, Path)):
            raise OnnxplainError(
                f"SegmentationRISE takes an ONNX file or an OnnxModel, not a {type(model).__name__}; "
                "export the model first, for example with `onnxplain export torch`"
            )
        self.model = load_model(model, device=device, batch_size=batch_size)
        self.width, self.height = (int(v) for v in input_size)
        self.batch_size = batch_size
        self.method: Rise | None = None

    def generate_masks(self, N: int, s: int, p1: float, savepath: str | Path | None = None, *, seed: int = 0) -> None:  # noqa: N803 - the 2019 names
        """Set `N` random masks of an `s` × `s` grid with keep probability `p1`; save them to `savepath` if given."""
        self.method = Rise(n_masks=N, grid_size=s, p1=p1, seed=seed, per_pixel_max=True)
        if savepath is not None:
            blank = np.zeros((self.height, self.width, 1), np.float32)
            self.method.mask_source(blank).save(savepath)

    def load_masks(self, filepath: str | Path) -> None:
        """Use the masks saved in `filepath` (an .npy file shaped (N, H, W) or (N, 1, H, W))."""
        self.method = Rise(masks_file=str(filepath), per_pixel_max=True)

    def __call__(self, image: np.ndarray, *, target: Target | None = None,
                 progress: Progress | None = None) -> RISEResult:
        """Explain `image` for the region the model segments (or `target`), and return its maps."""
        if self.method is None:
            raise OnnxplainError("call generate_masks(N, s, p1) or load_masks(path) before explaining")
        attribution = self.method.attribute(self.model, channels_last(np.asarray(image)), target,
                                            batch_size=self.batch_size, progress=progress)
        return RISEResult(attribution)
