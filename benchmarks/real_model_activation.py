"""Activation methods on real networks converted from other frameworks: do their maps find the segment?

For each real model of `real_models` (MediaPipe's selfie segmentation, converted from TFLite; PaddleOCR's
PP-OCRv4 text detector, exported by Paddle2ONNX), on its test image: the layer listing that
``onnxplain layers MODEL`` prints, then Eigen-CAM, Score-CAM and Ablation-CAM at the default layer (the
feature map the head reads) and at the bottleneck, each scored against the model's own segment:

- inside / outside: mean positive relevance per pixel inside the segment over that outside (higher is
  better; 1 means the map does not tell the segment from the rest);
- SRG: the gap between the least- and most-relevant-first deletion curves of the class score on a blurred
  copy (`onnxplain.evaluation.srg`, its defaults), beside the mean and spread of 8 random maps' gaps, as
  ``benchmarks/real_model_faithfulness.py`` reports it for the perturbation methods.

The text detector takes any size that is a multiple of 32, so its file has no spatial sizes for the
listing to find a bottleneck by; it is found on a copy whose input is fixed to the test image's size.

Run:  python benchmarks/real_model_activation.py [--models person,text]   (a few minutes on 2 cores)
Writes benchmarks/results/real_model_activation.md, and the summary picture of each map under
benchmarks/results/real_models/activation/MODEL/ (ignored by git).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_models  # noqa: E402

from onnxplain import render  # noqa: E402
from onnxplain.api import create_method  # noqa: E402
from onnxplain.evaluation.metric import EvaluationContext  # noqa: E402
from onnxplain.layers import bottleneck_layer, list_layers  # noqa: E402
from onnxplain.method import make_baseline  # noqa: E402
from onnxplain.model import OnnxModel  # noqa: E402
from onnxplain.registry import plugins  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PICTURES = RESULTS / "real_models" / "activation"
METHODS = ("eigen-cam", "score-cam", "ablation-cam")
IMAGES = {"person": "astronaut", "text": "lines"}
LISTING_CONTEXT = 2  # rows kept on each side of the rows of the layers explained
EXTRA_LAYERS = {
    # Paddle2ONNX writes HardSwish as x * Clip(x + 3, 0, 6) / 6, and the bottleneck that onnxplain picks (the
    # last activation op at the smallest size) is that Clip, a step inside the HardSwish; its output is
    # the Div after it.
    "text": {"bottleneck-hardswish": "hardswish_81.tmp_0"},
}
READING = """\
## What the pictures show

Observed on the pictures of this run (the three methods and SRG's random maps are deterministic, so a re-run
draws the same ones).

- **person, default layer**: all three light up the face and hair, less the suit; Eigen-CAM and Ablation-CAM
  put no positive relevance outside the segment. A person reads them at once as "the model looks at her
  face". Yet every SRG gap is negative: blurring the face first keeps the person score (MoRF AUC 0.90–0.96),
  blurring the background first lowers it. The perturbation maps of `real_model_faithfulness.md` pass the
  same test (HDM 0.374, occlusion 0.309), so these maps show where the features are strongest, not what the
  score depends on, and look more convincing than the measurement allows.
- **person, bottleneck** (16×16): Eigen-CAM is a coarse silhouette, the person red against a blue
  background; Score-CAM a faint, nearly even wash with one hot spot on the hair (ratio 1.36); Ablation-CAM
  favours the suit's arm, the mission patch and the helmet, not the face. Readable, but all SRG gaps negative.
- **text, default layer**: all three trace the text lines (SRG: Eigen-CAM 0.56, Ablation-CAM 0.64,
  Score-CAM 0.72, far above random), Score-CAM with a faint halo around each line: clear to anyone.
  Eigen-CAM's sign now points at the segment; pointed along the summed activation, as at first, it drew the
  same lines blue (negative) inside a red halo, which reads as "the text counts against the detection".
- **text, bottleneck `p2o.Clip.47`**: Score-CAM and Ablation-CAM are nearly even red over the whole image
  (ratio 0.97), which reads as "everything matters"; Eigen-CAM is coarse but leans to the text block
  (SRG 0.27). Not useful for reading which letters count.
- **text, HardSwish output**: Eigen-CAM puts two red blobs in the middle of the text block (SRG 0.257, beats
  random): coarse but pointing at text. Score-CAM and Ablation-CAM are zero everywhere: most activations sit
  at HardSwish's floor (−0.375, mean −0.31), the channel weights are nearly even, so the weighted sum is
  negative at every cell and the ReLU removes it. The picture says so ("the layer's weighted feature maps
  are nowhere positive, and the ReLU keeps none"; at first it said "no perturbation changed the score",
  which was not what happened: Score-CAM's channel scores ranged from 0.016 to 0.99).
"""
EXTRA_NOTES = {"bottleneck-hardswish": "the output of the HardSwish whose inner `Clip` the bottleneck rule picks "
                                       "(Paddle2ONNX writes HardSwish as x · Clip(x + 3, 0, 6) / 6)."}


def layer_listing(path: Path) -> str:
    """What ``onnxplain layers PATH`` prints."""
    done = subprocess.run([sys.executable, "-m", "onnxplain", "layers", str(path)], capture_output=True, text=True,
                          check=True)
    return done.stdout


def trimmed(listing: str, names: list[str]) -> str:
    """The listing's header, the rows near those of layers `names` and its last line."""
    rows = listing.rstrip("\n").splitlines()
    header, body, footer = rows[0], rows[1:-1], rows[-1]
    marked = [i for i, row in enumerate(body) if row[3:].split(" ")[0] in names]
    keep = sorted({j for i in marked for j in range(i - LISTING_CONTEXT, i + LISTING_CONTEXT + 1)
                   if 0 <= j < len(body)})
    lines, previous = [header], -1
    for j in keep:
        if j != previous + 1:
            lines.append("   …")
        lines.append(body[j])
        previous = j
    if previous != len(body) - 1:
        lines.append("   …")
    return "\n".join([*lines, footer])


def bottleneck_at_size(path: Path, image: np.ndarray, layout: str) -> str:
    """The bottleneck of a model whose file leaves its spatial sizes open: shape inference is run on a copy
    whose input is fixed to `image`'s size."""
    model = onnx.load(str(path))
    height, width = image.shape[:2]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    sizes = (1, 3, height, width) if layout == "NCHW" else (1, height, width, 3)
    for dim, size in zip(dims, sizes, strict=True):
        dim.dim_value = size
    with tempfile.TemporaryDirectory() as folder:
        fixed = Path(folder) / "fixed.onnx"
        onnx.save(model, str(fixed))
        found = bottleneck_layer(list_layers(fixed))
    if found is None:
        raise SystemExit(f"{path.name}: no feature map of known size even at the image's size")
    return found.name


def inside_outside(saliency: np.ndarray, segment: np.ndarray) -> tuple[float, float]:
    """Mean positive relevance per pixel inside `segment` over that outside it (infinite where there is
    none outside), and the share of all positive relevance that lies inside."""
    positive = np.maximum(saliency, 0)
    # An empty segment, one that covers everything, or a map with no positive value leaves nothing to compare.
    if not segment.any() or segment.all() or not positive.any():
        return float("nan"), float("nan")
    outside = positive[~segment].mean()
    ratio = positive[segment].mean() / outside if outside > 0 else float("inf")
    return float(ratio), float(positive[segment].sum() / positive.sum())


def run_model(name: str) -> tuple[str, list[str], list[dict]]:
    """The trimmed listing, notes on the layers, and one row per layer and method for real model `name`."""
    spec = real_models.MODELS[name]
    path = real_models.fetch(name)
    model = OnnxModel(path, **spec.onnxplain_options())
    image = real_models.image(IMAGES[name])
    listing = layer_listing(path)
    print(listing, flush=True)
    marked = bottleneck_layer(model.layers)
    layers = {"default": model.layer().name,
              "bottleneck": marked.name if marked is not None else bottleneck_at_size(path, image, spec.layout),
              **EXTRA_LAYERS.get(name, {})}
    notes = [] if marked is not None else [
        f"No `b` row: the file leaves spatial sizes open. The bottleneck `{layers['bottleneck']}` was found by "
        f"the same rule (`onnxplain.layers.bottleneck_layer`) on a copy fixed to the image's size, "
        f"{image.shape[0]}×{image.shape[1]}."]
    notes += [f"`{layer}` ({kind}): {EXTRA_NOTES[kind]}" for kind, layer in EXTRA_LAYERS.get(name, {}).items()]
    baseline = make_baseline(model, image)
    segment = baseline.reference.mask
    metric = plugins.create("metric", "srg")  # one instance: the random maps' gaps are computed once
    context = None
    rows = []
    for kind, layer in layers.items():
        for method_name in METHODS:
            method = create_method(method_name, layer=layer)
            started = time.perf_counter()
            result = method.attribute(model, baseline.image, baseline.target, baseline=baseline)
            seconds = time.perf_counter() - started
            folder = PICTURES / name
            folder.mkdir(parents=True, exist_ok=True)
            render.summary(result).save(folder / f"{kind}-{method_name}.png")
            context = context or EvaluationContext.from_attribution(result, model, seed=0)
            srg = metric.evaluate(context, result.map).values
            ratio, share = inside_outside(result.map, segment)
            row = {"model": name, "kind": kind, "layer": layer, "shape": result.record["layer"]["shape"],
                   "method": method_name, "ratio": ratio, "share": share, **srg,
                   "seconds": seconds, "passes": len(result.values), "segment_share": float(segment.mean())}
            print(f"{name} {kind} {layer} {method_name}: inside/outside {row['ratio']:.2f}, "
                  f"SRG {srg['srg_gap']:.3f}, {seconds:.1f} s", flush=True)
            rows.append(row)
    return trimmed(listing, list(layers.values())), notes, rows


def table(rows: list[dict]) -> str:
    columns = ["layer", "method", "inside / outside ↑", "share inside", "MoRF AUC ↓", "LeRF AUC ↑", "SRG gap ↑",
               "random maps' gap", "beats random", "forward passes", "seconds"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        shape = "×".join(str(side) for side in row["shape"])
        if np.isnan(row["ratio"]):
            ratio, share = "— (no positive value)", "—"
        else:
            ratio = "∞ (none outside)" if np.isinf(row["ratio"]) else f"{row['ratio']:.3g}"
            share = f"{row['share']:.0%}"
        lines.append(f"| {row['kind']} `{row['layer']}` ({shape}) | {row['method']} | **{ratio}** | "
                     f"{share} | {row['srg_morf_auc']:.3f} | {row['srg_lerf_auc']:.3f} | "
                     f"**{row['srg_gap']:.3f}** | {row['srg_random_gap']:.3f} ± {row['srg_random_gap_std']:.3f} | "
                     f"{'yes' if row['srg_beats_random'] else 'no'} | {row['passes']} | {row['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="person,text")
    args = parser.parse_args(argv)
    sections = ["# Activation methods on real converted models", "",
                "Written by `python benchmarks/real_model_activation.py`. Maps are scored against the model's own "
                "segment on its test image; pictures under `benchmarks/results/real_models/activation/` (ignored)."]
    for name in args.models.split(","):
        listing, notes, rows = run_model(name)
        spec = real_models.MODELS[name]
        sections += ["", f"## {name}: {spec.title}", "",
                     f"Image `{IMAGES[name]}`; the segment covers {rows[0]['segment_share']:.1%} of it (the share of "
                     "relevance inside that a map spread evenly would have).", "",
                     f"`onnxplain layers {spec.file}` (trimmed):", "", "```", listing, "```", "",
                     *[f"{note}\n" for note in notes], table(rows)]
    out = RESULTS / "real_model_activation.md"
    if args.models == "person,text":  # the reading is of this set of pictures
        sections += ["", READING.rstrip()]
    out.write_text("\n".join(sections) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
