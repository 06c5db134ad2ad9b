"""Does onnxplain's Score-CAM (onnxruntime alone) compute what pytorch-grad-cam's `ScoreCAM` computes?

onnxplain's ``score-cam`` runs on the bundled testnet ONNX file; pytorch-grad-cam's `ScoreCAM` runs on
its PyTorch twin (``onnxplain_torch.unet`` with ``testnet_weights.npz``), after checking that the twin's
logits match onnxruntime's within 1e-4 and mapping each ONNX layer to the torch module whose output
equals its activations. Both explain the whole class (the model's own segment), on 10 bundled samples,
at the default layer (``relu_18``, 4 × 240 × 240, no resizing) and the bottleneck (``relu_9``,
64 × 15 × 15, where the two resize their masks differently).

pytorch-grad-cam scores a masked image with a target callable; two are compared:

- ``probability mean``: the class probability (sigmoid of the logit) averaged over the segment, which
  is what onnxplain's Score-CAM scores; this is the parity measurement;
- ``logit sum``: pytorch-grad-cam's own `SemanticSegmentationTarget`, the raw logit summed over the
  segment; the softmax over channels then sees scores thousands of times larger.

Per sample: Pearson correlation of the two full-size maps, and their largest absolute difference once
both are min-max normalised to [0, 1] (pytorch-grad-cam always returns a normalised map).

Run:  python benchmarks/score_cam_parity.py   (about a minute on 2 cores)
Needs: pip install --no-deps grad-cam && pip install opencv-python-headless ttach tqdm
Writes benchmarks/results/score_cam_parity.md.
"""

from __future__ import annotations

import contextlib
import io
import sys
import types
from pathlib import Path

import numpy as np
import torch
from onnxplain_torch.unet import testnet_unet
from onnxplain_torch.weights import WEIGHTS_PATH, load_weights

from onnxplain import OnnxModel, create_method, data
from onnxplain.activation.base import to_image

RESULT = Path(__file__).resolve().parent / "results" / "score_cam_parity.md"
LAYERS = {"relu_18": "default, 4 × 240 × 240", "relu_9": "bottleneck, 64 × 15 × 15"}
SAMPLES = range(10)
BATCH = 16  # masked images per forward pass, on both sides
TWIN_TOLERANCE = 1e-4
DEFINITIONS = """\
## How the two define Score-CAM (read from the code)

| step | onnxplain `score-cam` | pytorch-grad-cam `ScoreCAM` 1.5.7 |
|---|---|---|
| mask from channel k | min-max normalise at the layer's size, then resize to the image with Pillow bilinear \
(half-pixel centres); constant channels are skipped | resize with `UpsamplingBilinear2d` (**aligned corners**), \
then min-max normalise (span + 1e-8); constant channels give an all-zero mask |
| masked input | image in [0, 1] × mask, *then* the model's `(x·scale − mean)/std` | the model's input tensor \
(already normalised) × mask |
| score of a masked image | class probability (sigmoid/softmax) **averaged** over the segment | whatever the target \
returns; the stock `SemanticSegmentationTarget` **sums raw logits** over the segment |
| baseline subtraction (the paper's f(X∘H) − f(X_b)) | none | none (softmax ignores a constant shift anyway) |
| channel weights | softmax of scores / temperature (1) over non-constant channels | softmax over all channels |
| map | ReLU(Σ w_k A_k) at the layer's size, bilinear (Pillow) to the image, not rescaled | ReLU(Σ w_k A_k), \
min-max normalised, `cv2.resize` (half-pixel) to the image |

What differs on testnet: only the mask geometry and the score. With both at one per pixel (`relu_18`)
and the score matched, the maps agree to float precision. At `relu_9` aligned-corner upsampling moves
each cell's mask by up to 7.5 px toward the border (cell j sits at 17.07·j px instead of 16·j + 7.5 px),
and testnet's answer is sensitive enough to that for some channels' scores to flip between 0 and 1; the
*realigned* column shows that onnxplain's scores equal pytorch-grad-cam's to ~1e-6 once its masks are made
the same way. The maps still correlate above 0.998 because scores in [0, 1] give softmax weights within a
factor e of each other: the map is close to the plain sum of the activations, whatever the scores
(*plain sum*). The stock logit-sum target's scores spread over thousands (*score range*), so its softmax
puts all the weight on one channel (*top weight* 1.000) and the map is that channel's activation:
a different method in practice.
The other differences (masking before or after the input normalisation, constant channels, final resize)
do not show here: testnet takes [0, 1] images unnormalised, no channel was constant, and Pillow's and
OpenCV's bilinear upsampling agree to 1e-7.
"""


def _stub_torchvision() -> None:
    """Let pytorch-grad-cam import without torchvision.

    Importing `pytorch_grad_cam` imports torchvision (``torchvision.transforms`` in ``utils/image.py``,
    ``torchvision.transforms.functional`` in ``sess.py``, the bare package in ``utils/model_targets.py``),
    though Score-CAM and the segmentation target use none of it. There is no CPU-only torchvision to
    install beside this CPU torch (pip would pull a CUDA torch), so empty stand-ins go into
    `sys.modules`; any of their names, if ever called, fails loudly.
    """

    def unavailable(*args, **kwargs):
        raise RuntimeError("torchvision is stubbed out in this benchmark")

    package = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    transforms.Compose = transforms.Normalize = transforms.ToTensor = unavailable
    functional.resize = unavailable
    package.transforms, transforms.functional = transforms, functional
    sys.modules.update({"torchvision": package, "torchvision.transforms": transforms,
                        "torchvision.transforms.functional": functional})


# pytorch-grad-cam imports torchvision at import time but Score-CAM never uses it, and no CPU-only torchvision
# can be installed beside this torch: stand-ins go into sys.modules first (see `_stub_torchvision`).
_stub_torchvision()
from pytorch_grad_cam import ScoreCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget  # noqa: E402


class ProbabilityMeanTarget:
    """What onnxplain's Score-CAM scores: the class probability (sigmoid of logit `category`) averaged over
    the boolean `mask`, in pytorch-grad-cam's target form (called on one image's output, (C, H, W))."""

    def __init__(self, category: int, mask: np.ndarray):
        self.category = category
        self.mask = torch.from_numpy(mask)

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(model_output[self.category])[self.mask].mean()


TARGETS = {"probability mean": ProbabilityMeanTarget, "logit sum": SemanticSegmentationTarget}


def check_twin(net: torch.nn.Module, model: OnnxModel) -> float:
    """The largest logit difference between the torch twin and onnxruntime over the samples."""
    images = np.stack([data.load_sample(i).image for i in SAMPLES])
    with torch.no_grad():
        expected = net(torch.from_numpy(images[:, None].astype(np.float32))).numpy()
    worst = float(np.abs(model.run_tensor(model.to_tensor(images[..., None])) - expected).max())
    if worst > TWIN_TOLERANCE:
        raise SystemExit(f"the torch twin differs from onnxruntime by {worst:.2e} > {TWIN_TOLERANCE}; stopping")
    return worst


def matching_modules(net: torch.nn.Module, model: OnnxModel, layers: list[str]) -> dict[str, tuple[str, float]]:
    """For each ONNX layer, the torch module (name) whose output equals its activations on sample 0,
    and the largest difference between them."""
    image = data.load_sample(0).image
    outputs: dict[str, np.ndarray] = {}
    hooks = [module.register_forward_hook(lambda _m, _i, out, name=name: outputs.__setitem__(name, out.numpy().copy()))
             for name, module in net.named_modules() if isinstance(module, torch.nn.ReLU)]
    with torch.no_grad():
        net(torch.from_numpy(image[None, None].astype(np.float32)))
    for hook in hooks:
        hook.remove()
    found = {}
    for layer in layers:
        wanted = model.activations(image[None, ..., None], layer)
        differences = {name: float(np.abs(out - wanted).max()) for name, out in outputs.items()
                       if out.shape == wanted.shape}
        name = min(differences, key=differences.get)
        if differences[name] > TWIN_TOLERANCE:
            raise SystemExit(f"no torch module gives ONNX layer {layer}'s activations (closest: {name}, "
                             f"{differences[name]:.2e})")
        found[layer] = (name, differences[name])
    return found


def unit(values: np.ndarray) -> np.ndarray:
    """`values` min-max normalised to [0, 1]; a constant map becomes zeros."""
    values = values.astype(np.float64)
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


class Recorded:
    """A pytorch-grad-cam target that keeps every score it gives: one per masked image, in channel order
    (Score-CAM without gradients calls its target on nothing else)."""

    def __init__(self, target):
        self.target = target
        self.scores: list[float] = []

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        score = self.target(model_output)
        self.scores.append(float(score))
        return score


def scores_with_grad_cam_masks(model: OnnxModel, image: np.ndarray, features: np.ndarray,
                               region: np.ndarray) -> np.ndarray:
    """onnxplain's channel scores (mean probability over `region`, onnxruntime) with the masks made as
    pytorch-grad-cam makes them: the feature maps (C, h, w) upsampled bilinearly with aligned corners
    (``torch.nn.UpsamplingBilinear2d``), then min-max normalised with 1e-8 added to the span.
    A diagnostic: it tells the mask geometry apart from everything else."""
    upsampled = torch.nn.functional.interpolate(torch.from_numpy(features[None]).float(), size=image.shape,
                                                mode="bilinear", align_corners=True)[0].numpy()
    low, high = upsampled.min(axis=(1, 2), keepdims=True), upsampled.max(axis=(1, 2), keepdims=True)
    masks = (upsampled - low) / (high - low + 1e-8)
    return model.predict(image[None, ..., None] * masks[..., None]).probability[:, region].mean(axis=1)


def compare(net: torch.nn.Module, model: OnnxModel, layer: str, module: torch.nn.Module) -> dict[str, list[dict]]:
    """Per target, one row per sample: Pearson of the two maps, their largest difference once normalised,
    the largest channel-score difference, and the facts behind it."""
    method = create_method("score-cam", layer=layer)
    cam = ScoreCAM(model=net, target_layers=[module])
    cam.batch_size = BATCH
    rows: dict[str, list[dict]] = {target: [] for target in TARGETS}
    for index in SAMPLES:
        image = data.load_sample(index).image
        ours = method.attribute(model, image[..., None], batch_size=BATCH)
        features = model.activations(image[None, ..., None], layer)[0]
        ours_scores = np.asarray(ours.record["channel_scores"])
        constant = int((features.max(axis=(1, 2)) == features.min(axis=(1, 2))).sum())
        realigned = scores_with_grad_cam_masks(model, image, features, ours.segment)
        plain = to_image(np.maximum(features.sum(axis=0), 0), image.shape)  # ReLU(sum of A_k), no weights
        tensor = torch.from_numpy(image[None, None].astype(np.float32))
        for name, target_class in TARGETS.items():
            target = Recorded(target_class(0, ours.segment))
            with contextlib.redirect_stderr(io.StringIO()):  # pytorch-grad-cam draws a progress bar per image
                theirs = cam(input_tensor=tensor, targets=[target])[0]
            scores = np.asarray(target.scores)
            weights = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
            rows[name].append({
                "sample": index,
                "pearson": float(np.corrcoef(ours.map.ravel(), theirs.ravel())[0, 1]),
                "difference": float(np.abs(unit(ours.map) - unit(theirs)).max()),
                "score_gap": float(np.abs(scores - ours_scores).max()),
                "realigned_gap": float(np.abs(scores - realigned).max()),
                "largest_weight": float(weights.max()),
                "score_spread": float(scores.max() - scores.min()),
                "plain": float(np.corrcoef(ours.map.ravel(), plain.ravel())[0, 1]),
                "constant_channels": constant,
            })
    return rows


def report(twin: float, modules: dict[str, tuple[str, float]], results: dict[str, dict[str, list[dict]]]) -> str:
    """The Markdown result file."""
    lines = ["# Score-CAM parity: onnxplain (onnxruntime) against pytorch-grad-cam (PyTorch twin)", "",
             "Written by `python benchmarks/score_cam_parity.py`. Testnet U-Net, bundled samples "
             f"{SAMPLES.start}–{SAMPLES.stop - 1}, whole-class target (the model's own segment), batches of {BATCH}.",
             "", f"- Torch twin against onnxruntime: largest logit difference {twin:.1e} over the samples.",
             "- ONNX layer → torch module (largest activation difference on sample 0): "
             + ", ".join(f"`{layer}` → `{name}` ({gap:.1e})" for layer, (name, gap) in modules.items()),
             "- Constant channels (onnxplain gives them no weight, pytorch-grad-cam scores a black image for them): "
             + ", ".join(f"`{layer}` {sum(r['constant_channels'] for r in rows['probability mean'])}"
                         for layer, rows in results.items()) + " over all samples.", "",
             "Columns: *Pearson* of the two full-size maps; *max diff*, the largest absolute difference once both "
             "are min-max normalised; *score gap*, the largest difference between the two implementations' "
             "channel scores; *realigned*, the same once onnxplain's scores are recomputed (onnxruntime) with "
             "pytorch-grad-cam's masks (aligned-corner upsampling, normalised after it); *top weight*, the "
             "largest softmax weight pytorch-grad-cam gives a channel, and *score range*, the spread of its "
             "channel scores; *plain sum*, Pearson of onnxplain's map with ReLU(Σ_k A_k), the map with equal "
             "weights.", ""]
    for layer, rows in results.items():
        lines += [f"## `{layer}` ({LAYERS[layer]})", "",
                  "| sample | Pearson, probability mean | max diff | score gap | realigned | plain sum "
                  "| Pearson, logit sum | max diff | top weight | score range |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        matched, stock = rows["probability mean"], rows["logit sum"]
        for same, other in zip(matched, stock, strict=True):
            lines.append(f"| {same['sample']} | {same['pearson']:.5f} | {same['difference']:.4f} | "
                         f"{same['score_gap']:.1e} | {same['realigned_gap']:.1e} | {same['plain']:.3f} | "
                         f"{other['pearson']:.3f} | {other['difference']:.3f} | {other['largest_weight']:.3f} | "
                         f"{other['score_spread']:.0f} |")
        mean = {key: np.mean([r[key] for r in matched]) for key in ("pearson", "difference", "score_gap",
                                                                    "realigned_gap", "plain")}
        stock_mean = {key: np.mean([r[key] for r in stock]) for key in ("pearson", "difference")}
        lines.append(f"| **mean** | **{mean['pearson']:.5f}** | {mean['difference']:.4f} | {mean['score_gap']:.1e} "
                     f"| {mean['realigned_gap']:.1e} | {mean['plain']:.3f} | **{stock_mean['pearson']:.3f}** | "
                     f"{stock_mean['difference']:.3f} | | |")
        lines.append("")
    return "\n".join(lines) + "\n" + DEFINITIONS


def main() -> None:
    torch.set_num_threads(2)
    model = OnnxModel(data.testnet_model_path())
    net = load_weights(testnet_unet(), WEIGHTS_PATH).eval()
    twin = check_twin(net, model)
    modules = matching_modules(net, model, list(LAYERS))
    by_name = dict(net.named_modules())
    results = {}
    for layer, (name, _) in modules.items():
        results[layer] = compare(net, model, layer, by_name[name])
        for target, rows in results[layer].items():
            print(f"{layer} {target}: Pearson " + " ".join(f"{r['pearson']:.4f}" for r in rows), flush=True)
    RESULT.write_text(report(twin, modules, results))
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
