"""Gradient methods on any ONNX model, through its PyTorch twin (`onnxplain_torch.twin`).

Every method here differentiates one number per image: the target class's probability (or logit,
with ``logit=True``) averaged over the target region, the region being the ROI or, for a whole
class, the model's own segment (`bridge.SignalModel`). Before any gradient, the twin is checked
against onnxruntime on the image (``tolerance``). Pixel methods give a value per pixel and
channel; the map is their sum over channels (signed methods) or their largest magnitude (saliency
and SmoothGrad). CAM methods weigh a layer's feature maps and bring the map to the image size as
the activation methods do.

This module imports PyTorch only when a method runs, so ``onnxplain plugins`` lists the methods,
and asking for one without PyTorch says how to install it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import warnings
from abc import abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxplain.activation.base import to_image
from onnxplain.attribution import Attribution
from onnxplain.batching import batches
from onnxplain.errors import OnnxplainError
from onnxplain.method import Baseline, Method, Progress
from onnxplain.model import OnnxModel
from onnxplain.segmenter import Segmenter

if TYPE_CHECKING:
    import torch

    from onnxplain_torch.bridge import SignalModel

INSTALL_HINT = 'pip install "onnxplain[torch]"'
STILL_WORKING = ("the perturbation methods (hdm, rise, occlusion, ablation, lime, kernel-shap, shapley) and the "
                 "activation methods (score-cam, ablation-cam, eigen-cam) still work, on onnxruntime alone")


class GradientMethod(Method):
    """A method that differentiates the model through its PyTorch twin.

    Parameters
    ----------
    logit : bool
        Differentiate the class logit averaged over the region instead of its probability.
    tolerance : float
        Largest difference allowed between the twin's output and onnxruntime's on the image.
    """

    needs = frozenset({"predictions"})
    requires: tuple[str, ...] = ("torch",)

    def __init__(self, *, logit: bool = False, tolerance: float = 1e-4):
        missing = [name for name in self.requires if importlib.util.find_spec(name) is None]
        if missing:
            raise OnnxplainError(f"method {self.name!r} needs {' and '.join(missing)}; install it with: "
                                 f"{INSTALL_HINT} ({STILL_WORKING})", parameters=("method",))
        if not tolerance > 0:
            raise OnnxplainError(f"tolerance must be positive, got {tolerance}", parameters=("tolerance",))
        self.logit = logit
        self.tolerance = tolerance

    def _attribute(self, model: Segmenter, baseline: Baseline, *, batch_size: int,
                   progress: Progress | None) -> Attribution:
        import torch

        from onnxplain_torch.bridge import SignalModel, check_twin

        if not isinstance(model, OnnxModel):
            raise OnnxplainError(f"method {self.name!r} differentiates an ONNX file; {type(model).__name__} has none",
                                 parameters=("method",))
        signal = SignalModel(model, baseline, logit=self.logit)
        difference = check_twin(signal, baseline.image, self.tolerance)
        image = torch.from_numpy(np.ascontiguousarray(baseline.image[None]))
        saliency, values, arrays, record = self._map(signal, image, model, batch_size=batch_size, progress=progress)
        record["twin"] = {"max_abs_difference": difference, "ops": signal.twin.op_types}
        record["signal"] = f"class {'logit' if self.logit else 'probability'} averaged over the target region"
        return Attribution(map=np.asarray(saliency, dtype=np.float32), image=baseline.image,
                           segment=baseline.reference.mask, region=baseline.reference.roi,
                           values=np.asarray(values, dtype=np.float64), arrays=arrays, record=record)

    @abstractmethod
    def _map(self, signal: SignalModel, image: torch.Tensor, model: OnnxModel, *, batch_size: int,
             progress: Progress | None) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
        """The map (H, W), the score of every image run, arrays to save, record entries."""


@contextlib.contextmanager
def _captum_quiet() -> Iterator[None]:
    """Captum announces the hooks it sets on every call; a command-line user has no use for that."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\.")
        yield


def gradients(signal: SignalModel, images: torch.Tensor, batch_size: int,
              progress: Progress | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores (n,) of `images` and their gradients with respect to them, `batch_size` images per pass."""
    import torch

    scores, grads = [], []
    fixed = signal.fixed_batch
    for start, stop in batches(len(images), fixed or batch_size):
        part = images[start:stop]
        if fixed and len(part) < fixed:  # a file exported for a fixed batch: fill it with copies, read the rest
            part = torch.cat([part, part[-1:].expand(fixed - len(part), *part.shape[1:])])
        part = part.detach().requires_grad_(True)
        score = signal(part)
        grads.append(torch.autograd.grad(score.sum(), part)[0][: stop - start])
        scores.append(score.detach()[: stop - start])
        if progress is not None:
            progress(stop - start)
    return torch.cat(scores), torch.cat(grads)


def scores_of(signal: SignalModel, images: torch.Tensor) -> np.ndarray:
    """The target's score on each of `images`, without gradients (one pass each on a fixed-batch file)."""
    import torch

    with torch.no_grad():
        if not signal.fixed_batch:
            return signal(images).numpy()
        return np.concatenate([signal(full_batch(signal, image[None]))[:1].numpy() for image in images])


def full_batch(signal: SignalModel, image: torch.Tensor) -> torch.Tensor:
    """One image (1, H, W, C) as the batch the file takes: copies of it when the batch is fixed."""
    return image.expand(signal.fixed_batch, *image.shape[1:]) if signal.fixed_batch else image


class Saliency(GradientMethod):
    """Saliency (Simonyan et al., 2014): the gradient's largest magnitude over the channels."""

    name = "saliency"

    def count(self, image: np.ndarray) -> int:
        return 1

    def _map(self, signal, image, model, *, batch_size, progress):
        scores, grad = gradients(signal, image, batch_size, progress)
        gradient = grad[0].numpy()
        return np.abs(gradient).max(axis=-1), scores.numpy(), {"gradient": gradient}, {}


class IntegratedGradients(GradientMethod):
    """Integrated Gradients (Sundararajan et al., 2017) from a constant baseline image.

    ``(x - x0) * integral of the gradient on the straight path from x0 to x``, by Gauss-Legendre
    quadrature over `steps` points (Captum's default rule); the map sums the channels. The record
    holds the completeness check: the attributions' sum against ``score(x) - score(x0)``, and their
    relative error; a large one says the score changes too abruptly along the path for `steps`
    (testnet's logit needs about 512).

    Parameters
    ----------
    steps : int
        Points on the path.
    baseline : float
        Value of every pixel of the baseline image, in image space (0: black).
    logit, tolerance
        See `GradientMethod`.
    """

    name = "integrated-gradients"

    def __init__(self, *, steps: int = 50, baseline: float = 0.0, logit: bool = False, tolerance: float = 1e-4):
        if steps < 1:
            raise OnnxplainError(f"steps must be at least 1, got {steps}", parameters=("steps",))
        super().__init__(logit=logit, tolerance=tolerance)
        self.steps = steps
        self.baseline = baseline

    def count(self, image: np.ndarray) -> int:
        return self.steps + 2

    def _map(self, signal, image, model, *, batch_size, progress):
        import torch

        nodes, weights = np.polynomial.legendre.leggauss(self.steps)
        alphas = torch.from_numpy(((nodes + 1) / 2).astype(np.float32))
        start = torch.full_like(image, self.baseline)
        path = start + alphas[:, None, None, None] * (image - start)
        scores, grads = gradients(signal, path, batch_size, progress)
        average = torch.tensordot(torch.from_numpy((weights / 2).astype(np.float32)), grads, dims=1)
        attributions = ((image[0] - start[0]) * average).numpy()
        ends = scores_of(signal, torch.cat([start, image]))
        if progress is not None:
            progress(2)
        total, difference = float(attributions.sum(dtype=np.float64)), float(ends[1] - ends[0])
        # Far from zero, more steps are needed: the score is too uneven along the path for this quadrature.
        error = abs(total - difference) / max(abs(difference), 1e-12)
        record = {"completeness": {"sum": total, "score_difference": difference, "relative_error": round(error, 6)}}
        return attributions.sum(axis=-1), scores.numpy(), {"attributions": attributions}, record


class SmoothGrad(GradientMethod):
    """SmoothGrad (Smilkov et al., 2017): saliency averaged over noisy copies of the image.

    Each copy adds Gaussian noise of standard deviation ``noise * (max - min)`` of the image,
    drawn from `seed`; the map is the mean gradient magnitude's largest value over the channels.

    Parameters
    ----------
    samples : int
        Noisy copies.
    noise : float
        Noise level, a fraction of the image's value range (the paper finds 10-20 % best).
    seed : int
        Seed of the noise.
    logit, tolerance
        See `GradientMethod`.
    """

    name = "smoothgrad"

    def __init__(self, *, samples: int = 25, noise: float = 0.15, seed: int = 0, logit: bool = False,
                 tolerance: float = 1e-4):
        if samples < 1 or not noise >= 0:
            raise OnnxplainError(f"samples must be at least 1 and noise non-negative, got {samples} and {noise}",
                                 parameters=("samples", "noise"))
        super().__init__(logit=logit, tolerance=tolerance)
        self.samples = samples
        self.noise = noise
        self.seed = seed

    def count(self, image: np.ndarray) -> int:
        return self.samples

    def _map(self, signal, image, model, *, batch_size, progress):
        import torch

        spread = float(image.max() - image.min()) or 1.0
        rng = np.random.default_rng(self.seed)
        noise = rng.normal(0.0, self.noise * spread, size=(self.samples, *image.shape[1:])).astype(np.float32)
        scores, grads = gradients(signal, image + torch.from_numpy(noise), batch_size, progress)
        magnitude = grads.abs().mean(dim=0).numpy()
        record = {"noise_std": self.noise * spread}
        return magnitude.max(axis=-1), scores.numpy(), {"mean_abs_gradient": magnitude}, record


class DeepLift(GradientMethod):
    """DeepLIFT (Shrikumar et al., 2017) with the rescale rule, Captum's implementation, from a constant baseline.

    The rescale rule covers the non-linearities that are modules of the twin (ReLU, Sigmoid, Tanh,
    ELU, Softmax, MaxPool) and the output's sigmoid or softmax; other non-linear ops pass plain
    gradients, and the record lists them with Captum's convergence delta (how far the attributions'
    sum is from ``score(x) - score(x0)``).

    Parameters
    ----------
    baseline : float
        Value of every pixel of the baseline image, in image space (0: black).
    logit, tolerance
        See `GradientMethod`.
    """

    name = "deeplift"
    requires = ("torch", "captum")
    LINEAR = frozenset({"Conv", "ConvTranspose", "Add", "Sub", "Concat", "Reshape", "Transpose", "Flatten",
                        "Squeeze", "Unsqueeze", "Slice", "Split", "Gather", "Pad", "Identity", "Dropout",
                        "BatchNormalization", "AveragePool", "GlobalAveragePool", "ReduceMean", "ReduceSum",
                        "Resize", "Upsample", "Gemm", "MatMul", "Constant", "Shape", "Cast", "Relu", "Sigmoid",
                        "Tanh", "Elu", "Softmax", "MaxPool"})

    def __init__(self, *, baseline: float = 0.0, logit: bool = False, tolerance: float = 1e-4):
        super().__init__(logit=logit, tolerance=tolerance)
        self.baseline = baseline

    def count(self, image: np.ndarray) -> int:
        return 2

    def _map(self, signal, image, model, *, batch_size, progress):
        import torch
        from captum.attr import DeepLift as CaptumDeepLift

        from onnxplain_torch.twin import MaxPoolWithPads

        if signal.fixed_batch:
            raise OnnxplainError(f"DeepLIFT runs the image and its baseline in one pass, and this file is exported for "
                                 f"a batch of exactly {signal.fixed_batch}; export it with a dynamic batch, or use "
                                 "integrated-gradients", parameters=("method",))
        start = torch.full_like(image, self.baseline)
        with _captum_quiet():
            attributions, delta = CaptumDeepLift(signal).attribute(image.clone().requires_grad_(True), baselines=start,
                                                                   return_convergence_delta=True)
        if progress is not None:
            progress(2)
        ends = scores_of(signal, torch.cat([start, image]))
        values = attributions[0].detach().numpy()
        # Ops without a rescale rule pass plain gradients, MaxPool too where the twin needed its own module.
        plain = set(signal.twin.op_types) - self.LINEAR
        if any(isinstance(m, MaxPoolWithPads) for m in signal.twin.nonlinear.values()):
            plain.add("MaxPool")
        record = {"convergence_delta": float(delta.abs().max()), "gradient_only_ops": sorted(plain)}
        return values.sum(axis=-1), ends, {"attributions": values}, record


class CamMethod(GradientMethod):
    """A CAM method: a layer's feature maps weighed by the gradients of the target's score.

    Parameters
    ----------
    layer : str, optional
        The feature map (``onnxplain layers MODEL`` lists them); the one the model's head reads
        when omitted.
    logit, tolerance
        See `GradientMethod`.
    """

    def __init__(self, *, layer: str | None = None, logit: bool = False, tolerance: float = 1e-4):
        super().__init__(logit=logit, tolerance=tolerance)
        self.layer = layer

    def count(self, image: np.ndarray) -> int:
        return 1

    def layer_gradients(self, signal: SignalModel, image: torch.Tensor, model: OnnxModel
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """The score, the layer's feature maps (C, h, w) and the score's gradient with respect to them."""
        import torch

        layer = model.layer(self.layer)
        # The input asks for gradients so that autograd records the graph up to the layer.
        score, kept = signal.run(full_batch(signal, image).detach().requires_grad_(True), keep=(layer.name,))
        features = kept[layer.name]
        if features.dim() != 4:
            raise OnnxplainError(f"layer {layer.name!r} gives activations shaped {tuple(features.shape[1:])}, not a "
                                 "feature map (C, h, w); choose another layer", parameters=("layer",))
        grad = torch.autograd.grad(score.sum(), features)[0]
        record = {"layer": {"name": layer.name, "op": layer.op, "shape": list(features.shape[1:])}}
        return (score.detach()[:1].numpy(), features[0].detach().double().numpy(), grad[0].double().numpy(), record)

    def _map(self, signal, image, model, *, batch_size, progress):
        score, features, grad, record = self.layer_gradients(signal, image, model)
        if progress is not None:
            progress(1)
        weights = self.channel_weights(features, grad)
        low = np.maximum(np.tensordot(weights, features, axes=1), 0.0)
        return (to_image(low, tuple(image.shape[1:3])), score, {"layer_map": low.astype(np.float32)},
                {**record, "channel_weights": weights.round(8).tolist()})

    @abstractmethod
    def channel_weights(self, features: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """One weight per channel from the feature maps and gradients (C, h, w)."""


class GradCam(CamMethod):
    """Grad-CAM (Selvaraju et al., 2017): channels weighed by their mean gradient, ReLU of the sum."""

    name = "grad-cam"

    def channel_weights(self, features, grad):
        return grad.mean(axis=(1, 2))


class GradCamPlusPlus(CamMethod):
    """Grad-CAM++ (Chattopadhay et al., 2018): positive gradients weighed per position.

    ``alpha = g^2 / (2 g^2 + sum(A) g^3)`` (the paper's closed form, which assumes an exponential
    of the score; pytorch-grad-cam uses the same), weight ``= sum(alpha * ReLU(g))`` per channel.
    """

    name = "grad-cam++"

    def channel_weights(self, features, grad):
        squared, cubed = grad**2, grad**3
        denominator = 2 * squared + features.sum(axis=(1, 2))[:, None, None] * cubed
        alpha = np.where(grad != 0, squared / np.where(denominator != 0, denominator, 1e-7), 0.0)
        return (alpha * np.maximum(grad, 0)).sum(axis=(1, 2))


class GuidedGradCam(CamMethod):
    """Guided Grad-CAM (Selvaraju et al., 2017): guided backpropagation times the upsampled Grad-CAM.

    Guided backpropagation (Springenberg et al., 2015, Captum's implementation) passes only
    positive gradients back through every ReLU; the map sums its channels, times the Grad-CAM
    map at the image size.
    """

    name = "guided-grad-cam"
    requires = ("torch", "captum")

    def count(self, image: np.ndarray) -> int:
        return 2

    def channel_weights(self, features, grad):
        return grad.mean(axis=(1, 2))

    def _map(self, signal, image, model, *, batch_size, progress):
        from captum.attr import GuidedBackprop

        cam, score, arrays, record = super()._map(signal, image, model, batch_size=batch_size, progress=None)
        with _captum_quiet():
            guided = GuidedBackprop(signal).attribute(full_batch(signal, image).clone().requires_grad_(True))
        guided = guided[0].detach().numpy()
        if progress is not None:
            progress(2)
        return guided.sum(axis=-1) * cam, score, {**arrays, "guided_backprop": guided}, record
