"""What the white-box methods differentiate: image -> the model's preprocessing -> twin -> target score.

`SignalModel` is a torch module from images in image space (n, H, W, C), as onnxplain takes them,
to one number per image: the target class's probability (or logit) averaged over the target
region, as the class score reads it and as Humer et al.'s ROI adapter does. Its preprocessing is
`OnnxModel.to_tensor` written in torch, so gradients are with respect to the image's pixels.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from onnxplain.errors import OnnxplainError, first_line
from onnxplain.method import Baseline
from onnxplain.model import OnnxModel
from onnxplain.signature import output_name
from onnxplain_torch.gradients import STILL_WORKING
from onnxplain_torch.twin import TorchTwin


@functools.lru_cache(maxsize=4)
def _twin(path: Path, sha256: str) -> TorchTwin:
    try:
        return TorchTwin(onnx.load(str(path))).eval()
    except OnnxplainError as error:
        raise OnnxplainError(f"{error}, so the gradient methods cannot explain it; {STILL_WORKING}",
                             parameters=("method",)) from None


class SignalModel(nn.Module):
    """Images (n, H, W, C) in image space -> the target's score (n,), differentiable.

    Parameters
    ----------
    model : OnnxModel
        The model, with its preprocessing and output reading.
    baseline : Baseline
        The unperturbed case: its target (class, output) and region.
    logit : bool
        Average the class logit instead of its probability (for a model that outputs
        probabilities, their log-odds).
    """

    def __init__(self, model: OnnxModel, baseline: Baseline, *, logit: bool = False):
        super().__init__()
        if model.resize_to is not None:
            raise OnnxplainError("the gradient methods do not run with --resize yet; give images at the model's "
                                 f"size or use a perturbation or activation method; {STILL_WORKING}",
                                 parameters=("resize",))
        if model.input.dtype != np.float32:
            raise OnnxplainError(f"the gradient methods need a float32 input; this model takes {model.input.dtype}",
                                 parameters=("method",))
        self.twin = _twin(model.path, model.sha256)
        name = model.output_name if baseline.target.output is None else output_name(model._output_names,
                                                                                    baseline.target.output)
        self.output_index = self.twin.output_names.index(name)
        self.reader = model._reader(name)
        if self.reader.activation == "labels":
            raise OnnxplainError(f"output {name!r} holds class labels, which have no gradient; export the model "
                                 f"without its final ArgMax to use the gradient methods; {STILL_WORKING}",
                                 parameters=("output",))
        chosen = baseline.target.class_index
        self.class_index = self.reader.class_index if chosen is None else chosen
        self.model = model
        self.logit = logit
        region = torch.from_numpy(np.asarray(baseline.reference.region, dtype=np.float32))
        if not region.any():
            raise OnnxplainError("the target region is empty: the model segments nothing of this class here and no "
                                 "region of interest was given; give --roi, --box or --pixels, or another class",
                                 parameters=("target",))
        self.fixed_batch = model.input.batch  # images per pass the file takes, or None for any
        self.register_buffer("region", region / region.sum().clamp(min=1.0), persistent=False)
        self.activation = {"sigmoid": nn.Sigmoid(), "softmax": nn.Softmax(dim=1)}.get(self.reader.activation)
        # (x * scale - mean) / std as x * gain - shift, per channel in the model's order
        self.register_buffer("gain", torch.from_numpy(model.scale / model.std), persistent=False)
        self.register_buffer("shift", torch.from_numpy(model.mean / model.std), persistent=False)

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        """`OnnxModel.to_tensor` in torch: channel order, normalisation, layout."""
        model = self.model
        x = images
        if model.color == "bgr" and model.input.channels == 3:
            x = x.flip(-1)
        x = x * self.gain - self.shift
        if model.input.layout == "NCHW":
            x = x.permute(0, 3, 1, 2)
        elif model.input.layout == "NHW":
            x = x[..., 0]
        return x

    def run(self, images: torch.Tensor, keep: tuple[str, ...] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The target's score (n,) and the intermediate tensors named in `keep`, in the autograd graph."""
        outputs, kept = self.twin.run(self.to_input(images), keep=keep)
        return (self._class_map(outputs[self.output_index]) * self.region).sum(dim=(1, 2)), kept

    def _class_map(self, raw: torch.Tensor) -> torch.Tensor:
        """The chosen class's probability (or logit) at every pixel, (n, H, W), from the raw output."""
        logits = raw[:, None] if raw.dim() == 3 else raw.permute(0, 3, 1, 2) if self.reader.channels_last else raw
        if self.logit:
            if self.reader.activation == "none":  # the model gives probabilities: their log-odds
                p = logits[:, self.class_index].clamp(1e-6, 1 - 1e-6)
                return torch.log(p) - torch.log1p(-p)
            return logits[:, self.class_index]
        if self.activation is not None:
            logits = self.activation(logits)
        return logits[:, self.class_index]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.run(images)[0]


def check_twin(signal: SignalModel, image: np.ndarray, tolerance: float) -> float:
    """Largest difference between the twin's raw output and onnxruntime's on `image`; refuse above `tolerance`."""
    model = signal.model
    name = signal.twin.output_names[signal.output_index]
    images = np.repeat(image[None], signal.fixed_batch or 1, axis=0)
    expected = model.run_tensor(model.to_tensor(images), name)
    try:
        with torch.no_grad():
            got = signal.twin.run(signal.to_input(torch.from_numpy(images)))[0][signal.output_index].numpy()
    except OnnxplainError as error:
        raise OnnxplainError(f"{error}, so the gradient methods cannot explain this model; {STILL_WORKING}",
                             parameters=("method",)) from None
    except Exception as error:  # an op the twin replays differently on this model: torch says where
        raise OnnxplainError(f"the PyTorch twin of this model fails on this image ({type(error).__name__}: "
                             f"{first_line(error)}), so the gradient methods cannot explain it; {STILL_WORKING}",
                             parameters=("method",)) from error
    if got.shape != expected.shape:
        raise OnnxplainError(f"the PyTorch twin of this model gives an output shaped {got.shape}, onnxruntime "
                             f"{expected.shape}; the gradient methods cannot explain it; {STILL_WORKING}",
                             parameters=("method",))
    difference = float(np.abs(got.astype(np.float64) - expected).max())
    if not difference <= tolerance:
        raise OnnxplainError(
            f"the PyTorch twin of this model differs from onnxruntime by {difference:.2g} on this image (more than "
            f"{tolerance:g}), so gradients would explain another function; {STILL_WORKING}",
            parameters=("tolerance",),
        )
    return difference
