"""Reduced precision on this CPU: speed of fp16 and int8 against fp32, and how far their answers agree.

For testnet (bundled sample 0) and MediaPipe's person segmenter (the astronaut, `real_models.py`):

- speed: forward passes per second of the bare model (`OnnxModel.run_tensor`) at batch 16 on
  RISE-perturbed copies of the image, arms interleaved in each round, ratio to fp32 per round,
  median of the rounds; int8 in both of onnxruntime's formats (QDQ, QOperator);
- agreement: the check's figures (segment Dice, score correlation over 32 perturbed copies) with
  int8 calibrated on the image alone and on the image and 8 perturbed copies, and the Pearson
  correlation of RISE (500 masks) and HDM maps made at int8 with those made at fp32 (same seed);
- refusals: every model, test image and precision the check refuses with the default thresholds.

Run:  python benchmarks/precision.py [--rounds 3]   (about 5 minutes on 2 cores)
Writes benchmarks/results/precision.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_models  # noqa: E402

import onnxplain  # noqa: E402
from onnxplain import data  # noqa: E402
from onnxplain import model as model_module
from onnxplain.errors import OnnxplainError  # noqa: E402
from onnxplain.model import OnnxModel  # noqa: E402
from onnxplain.precision import _to_int8, perturbed_copies  # noqa: E402
from onnxplain.session import create_session  # noqa: E402

BATCH = 16
PASSES = 3  # forward passes per arm per round


def cases() -> list[tuple[str, Path, dict, np.ndarray]]:
    found = [("testnet", data.testnet_model_path(), {}, data.load_sample(0).image[..., None])]
    spec = real_models.MODELS["person"]
    found.append(("person", real_models.fetch("person", check_parity=False), spec.onnxplain_options(),
                  real_models.image("astronaut")))
    return found


def speed(label: str, path: Path, options: dict, image: np.ndarray, rounds: int, cache: Path) -> list[str]:
    fp32 = OnnxModel(path, device="cpu", batch_size=BATCH, cache=cache, **options)
    int8 = OnnxModel(path, device="cpu", batch_size=BATCH, cache=cache, precision="int8", min_dice=0,
                     min_correlation=0, **options)  # speed whatever the check says
    int8.prepare(image)
    tensor = fp32.to_tensor(perturbed_copies(image, BATCH, seed=5))
    calibration = fp32.to_tensor(np.concatenate([image[None], perturbed_copies(image, 8, seed=1)]))
    qoperator, _ = create_session(_to_int8(path, calibration, fp32.input.name, quant_format="QOperator"), "cpu")
    arms = {"fp32": lambda: fp32.run_tensor(tensor), "int8 QDQ": lambda: int8.run_tensor(tensor),
            "int8 QOperator": lambda: qoperator.run(None, {fp32.input.name: tensor})}
    rates: dict[str, list[float]] = {name: [] for name in arms}
    for run in arms.values():
        run()  # warm-up
    for _ in range(rounds):
        for name, run in arms.items():
            started = time.perf_counter()
            for _ in range(PASSES):
                run()
            rates[name].append(PASSES * BATCH / (time.perf_counter() - started))
    lines = []
    for name, values in rates.items():
        ratio = np.median(np.array(values) / np.array(rates["fp32"]))
        lines.append(f"| {label} | {name} | {np.median(values):.1f} | {ratio:.2f} |")
    return lines


def fp16_outcome(path: Path, options: dict, image: np.ndarray) -> str:
    try:
        OnnxModel(path, device="cpu", cache=False, precision="fp16", **options).prepare(image)
    except OnnxplainError as error:
        return f"refused: {error}"
    return "runs"


def agreement(label: str, path: Path, options: dict, image: np.ndarray, cache: Path) -> list[str]:
    lines = []
    fp32 = OnnxModel(path, device="cpu", cache=cache, **options)
    maps32 = {m: onnxplain.explain(fp32, image, method=m, **kw).map.ravel() for m, kw in METHODS.items()}
    for copies in (0, 8):
        model_module.CALIBRATION_COPIES = copies  # what the int8 model is calibrated on
        int8 = OnnxModel(path, device="cpu", cache=False, precision="int8", min_dice=0, min_correlation=0, **options)
        int8.prepare(image)
        check = int8.describe()["precision"]["check"]
        pearson = [float(np.corrcoef(onnxplain.explain(int8, image, method=m, **kw).map.ravel(), maps32[m])[0, 1])
                   for m, kw in METHODS.items()]
        lines.append(f"| {label} | image + {copies} copies | {check['dice']:.4f} | {check['correlation']:.4f} | "
                     f"{pearson[0]:.4f} | {pearson[1]:.4f} |")
    model_module.CALIBRATION_COPIES = 8
    return lines


METHODS = {"rise": {"n_masks": 500, "seed": 0}, "hdm": {}}


def refusals() -> list[str]:
    found = []
    sets = [("testnet", data.testnet_model_path(), {}, [(f"sample {i}", data.load_sample(i).image) for i in range(10)])]
    for name in ("text", "person"):
        spec = real_models.MODELS[name]
        images = spec.images + (("coffee", "chelsea") if name == "person" else ())
        sets.append((name, real_models.fetch(name, check_parity=False), spec.onnxplain_options(),
                     [(i, real_models.image(i)) for i in images]))
    for label, path, options, images in sets:
        for image_name, image in images:
            model = OnnxModel(path, device="cpu", cache=False, precision="int8", **options)
            try:
                model.prepare(image)
                outcome = "accepted"
            except OnnxplainError as error:
                outcome = f"**refused**: {error}"
            check = model.describe()["precision"].get("check")  # absent when the int8 model could not be made
            figures = f"{check['dice']:.4f} | {check['correlation']:.4f}" if check else "- | -"
            found.append(f"| {label} | {image_name} | {figures} | {outcome} |")
            print(found[-1], flush=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    out = ["# Reduced precision on this CPU", "",
           f"Made by `python benchmarks/precision.py --rounds {args.rounds}`.", "",
           "## Speed (bare forward passes at batch 16, arms interleaved, median of per-round ratios)", "",
           "| model | arm | passes/s (median) | ratio to fp32 |", "|---|---|---|---|"]
    fp16 = []
    with tempfile.TemporaryDirectory() as folder:
        for label, path, options, image in cases():
            out += speed(label, path, options, image, args.rounds, Path(folder))
            fp16.append(f"- {label}: {fp16_outcome(path, options, image)}")
            print("\n".join(out[-3:]), flush=True)
        out += ["", "## fp16", "", *fp16, "",
                "## int8 agreement with fp32 (check figures, and Pearson of maps made with the same seed)", "",
                "| model | int8 calibrated on | segment Dice | score correlation (32 copies) | RISE map Pearson | "
                "HDM map Pearson |", "|---|---|---|---|---|---|"]
        for label, path, options, image in cases():
            out += agreement(label, path, options, image, Path(folder))
            print("\n".join(out[-2:]), flush=True)
    out += ["", "## The check on every test image (int8, default thresholds 0.95)", "",
            "| model | image | segment Dice | score correlation | outcome |", "|---|---|---|---|---|", *refusals()]
    target = Path(__file__).resolve().parent / "results" / "precision.md"
    target.write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
