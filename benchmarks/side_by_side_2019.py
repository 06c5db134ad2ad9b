"""onnxplain beside the 2019 library it grew from (interpret-segmentation 1.0.0), on the same model and sample.

The 2019 library is run unchanged, the way its manual runs it: ``HausdorffDistanceMasks(240, 240)``,
``generate_masks(circle_size=25, offset=5)``, ``explain(model, image, segment, device)``, and
``SegmentationRISE(model, (240, 240), device)``, ``generate_masks(N=3000, s=8, p1=0.1)``,
``explainer(image)`` under ``torch.no_grad()``. Its model is the bundled testnet U-Net in PyTorch
(``onnxplain_torch.unet`` with ``testnet_weights.npz``, the weights the bundled ONNX file was
exported from) returning the class probability shaped (B, H, W), as the 2019 code requires; the
sample is bundled sample 0, its ground-truth segment the reference.

onnxplain explains the ONNX export of the same weights on the same sample:
- ``same work``: the 2019 HDM (``variant=2019``: black circles, Hausdorff distance) with the same
  circles, and RISE with the same number, grid and probability of masks, at full precision;
- fewer passes: HDM refined coarse-to-fine (``refine=0.05``, blocks of 4) and RISE that stops when
  its map is expected to correlate 0.97 with the whole budget's (``converge=0.97``), at full precision and on
  the int8 model calibrated on the image (``--precision int8``, no cache, the model loaded inside
  the timing: quantising and the check that it keeps the answer are timed, as on a user's first run).
  An arm whose precision is refused says so, and is timed with the check overridden
  (``min_correlation=0``), its map compared with the same-work one.

Each arm's wall time covers making the masks and explaining (models are loaded before any
timing in both libraries, but for the int8 arms: about 10 ms); the arms alternate, the 2019 one
first, for `--rounds` rounds, and the ratio is the median of the per-round ratios. torch and
onnxruntime use the same number of threads.

Run:  .venv/bin/pip install --no-deps interpret-segmentation==1.0.0
      python benchmarks/side_by_side_2019.py [--rounds 3]   (about 10 minutes a round on 2 cores)
Writes benchmarks/results/side_by_side_2019.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import onnxplain
from onnxplain import data
from onnxplain.errors import OnnxplainError
from onnxplain.model import OnnxModel

RESULTS = Path(__file__).resolve().parent / "results"
CIRCLE_SIZE, OFFSET = 25, 5  # the 2019 manual's HDM example
N_MASKS, GRID, P1 = 3000, 8, 0.1  # the 2019 manual's RISE example

# onnxplain's arms: (label, method, parameters, model options)
ONNXPLAIN_ARMS: dict[str, list[tuple[str, str, dict, dict]]] = {
    "hdm": [
        ("same work", "hdm", {"variant": "2019", "circle_size": CIRCLE_SIZE, "offset": OFFSET}, {}),
        ("coarse-to-fine", "hdm", {"variant": "2019", "circle_size": CIRCLE_SIZE, "offset": OFFSET,
                                   "refine": 0.05}, {}),
        ("coarse-to-fine, int8", "hdm", {"variant": "2019", "circle_size": CIRCLE_SIZE, "offset": OFFSET,
                                         "refine": 0.05}, {"precision": "int8", "cache": False}),
    ],
    "rise": [
        ("same work", "rise", {"n_masks": N_MASKS, "grid_size": GRID, "p1": P1}, {}),
        ("converge 0.97", "rise", {"n_masks": N_MASKS, "grid_size": GRID, "p1": P1, "converge": 0.97}, {}),
        ("converge 0.97, int8", "rise", {"n_masks": N_MASKS, "grid_size": GRID, "p1": P1, "converge": 0.97},
         {"precision": "int8", "cache": False}),
    ],
}


def _stub_torchvision() -> None:
    """Stand in for the two torchvision transforms the 2019 HDM imports, exactly as torchvision defines them.

    There is no CPU-only torchvision to install beside this torch; the 2019 HDM uses only
    ``ToTensor`` (a PIL image to a float tensor in [0, 1], channels first) and ``Normalize``.
    """

    class ToTensor:
        def __call__(self, picture) -> torch.Tensor:
            array = np.asarray(picture, dtype=np.float32) / 255.0
            return torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy())

    class Normalize:
        def __init__(self, mean, std):
            self.mean, self.std = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]

        def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
            return (tensor - self.mean) / self.std

    package = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    transforms.ToTensor, transforms.Normalize = ToTensor, Normalize  # type: ignore[attr-defined]
    package.transforms = transforms  # type: ignore[attr-defined]
    sys.modules.update({"torchvision": package, "torchvision.transforms": transforms})


class ProbabilityMap(torch.nn.Module):
    """The testnet U-Net returning its class probability shaped (B, H, W), as the 2019 code needs."""

    def __init__(self):
        super().__init__()
        from onnxplain_torch.unet import testnet_unet
        from onnxplain_torch.weights import WEIGHTS_PATH, load_weights

        self.unet = load_weights(testnet_unet(), WEIGHTS_PATH).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.unet(x))[:, 0]


def legacy_arms(image: np.ndarray, segment: np.ndarray, folder: Path) -> dict[str, Callable[[], np.ndarray]]:
    """The 2019 HDM and RISE, each a function that makes its masks, explains and returns its map."""
    _stub_torchvision()
    os.environ["TQDM_DISABLE"] = "1"  # its mask-making progress bar, on every round
    from interpret_segmentation import hdm
    from interpret_segmentation.rise import SegmentationRISE

    model = ProbabilityMap()
    device = torch.device("cpu")
    tensor = torch.from_numpy(image[None].astype(np.float32))  # (1, H, W): one channel, as 2019 took it
    truth = segment.astype(np.float32)
    height, width = image.shape

    def run_hdm() -> np.ndarray:
        explainer = hdm.HausdorffDistanceMasks(width, height)
        explainer.generate_masks(circle_size=CIRCLE_SIZE, offset=OFFSET)
        with torch.no_grad():
            result = explainer.explain(model, tensor, truth, device)
        return result.distances(hdm.RAW)

    def run_rise() -> np.ndarray:
        explainer = SegmentationRISE(model, (height, width), device)
        explainer.generate_masks(N=N_MASKS, s=GRID, p1=P1, savepath=str(folder / "rise_masks.npy"))
        with torch.no_grad():
            result = explainer(tensor[None])
        return result.mean()

    return {"hdm": run_hdm, "rise": run_rise}


def onnxplain_arm(model: OnnxModel | None, image: np.ndarray, segment: np.ndarray, method: str,
                  parameters: dict, options: dict) -> Callable[[], np.ndarray]:
    """An onnxplain explanation; with no `model`, one loaded inside the timing (so that a reduced
    precision's quantising and check, done once per model and image, are timed)."""

    def run() -> np.ndarray:
        chosen = model or OnnxModel(data.testnet_model_path(), device="cpu", **options)
        return onnxplain.explain(chosen, image, method=method, segment=segment, seed=0, **parameters).map

    return run


def timed(run: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["hdm", "rise"], choices=["hdm", "rise"])
    parser.add_argument("--out", type=Path, default=RESULTS / "side_by_side_2019")
    args = parser.parse_args()

    threads = torch.get_num_threads()
    sample = data.load_sample(0)
    image, segment = sample.image, sample.segment
    fp32 = OnnxModel(data.testnet_model_path(), device="cpu")
    record: dict = {"threads": threads, "rounds": args.rounds, "sample": 0, "methods": {}}
    with tempfile.TemporaryDirectory() as folder:
        legacy = legacy_arms(image, segment, Path(folder))
        for method in args.methods:
            arms = ONNXPLAIN_ARMS[method]
            runners, refusals = {}, {}
            for label, name, parameters, options in arms:
                runners[label] = onnxplain_arm(None if options else fp32, image, segment, name, parameters, options)
                try:
                    runners[label]()  # warm up: imports and onnxruntime's first passes
                except OnnxplainError as error:
                    # A refused precision is timed and compared with its check overridden, to show what
                    # the refusal spared the user.
                    refusals[label] = str(error)
                    options.update(min_dice=0.0, min_correlation=0.0)
                    runners[label] = onnxplain_arm(None, image, segment, name, parameters, options)
                    runners[label]()
            times: dict[str, list[float]] = {"2019": [], **{label: [] for label in runners}}
            maps: dict[str, np.ndarray] = {}
            for round_index in range(args.rounds):
                seconds, maps["2019"] = timed(legacy[method])
                times["2019"].append(seconds)
                for label, run in runners.items():
                    seconds, maps[label] = timed(run)
                    times[label].append(seconds)
                print(method, round_index, {k: round(v[-1], 2) for k, v in times.items()}, flush=True)
            same = maps["same work"]
            record["methods"][method] = {
                label: {
                    "seconds": values,
                    "median_seconds": statistics.median(values),
                    "ratio_2019_over_this": (None if label == "2019" else statistics.median(
                        old / new for old, new in zip(times["2019"], values, strict=True))),
                    "pearson_with_same_work": (None if label in ("2019", "same work") else float(
                        np.corrcoef(same.ravel(), maps[label].ravel())[0, 1])),
                    "parameters": next(({"method": n, **p, **o} for lab, n, p, o in arms if lab == label),
                                       None),
                    "refused": refusals.get(label),
                }
                for label, values in times.items()
            }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(record))
    print(markdown(record))


def markdown(record: dict) -> str:
    lines = [f"onnxplain beside interpret-segmentation 1.0.0 (2019) on testnet sample 0, 240×240, "
             f"{record['threads']} threads each, median of {record['rounds']} interleaved rounds "
             "(`python benchmarks/side_by_side_2019.py`).", "",
             "| method | arm | wall time | 2019 / this (median of per-round ratios) "
             "| Pearson with onnxplain's same-work map |",
             "|---|---|---|---|---|"]
    for method, arms in record["methods"].items():
        for label, values in arms.items():
            ratio = values["ratio_2019_over_this"]
            pearson = values["pearson_with_same_work"]
            if values.get("refused"):
                label = f"{label}: refused (\"{values['refused']}\"); timed with the check overridden"
            lines.append(f"| {method} | {label} | {values['median_seconds']:.2f} s | "
                         f"{'' if ratio is None else f'**{ratio:.1f}×**'} | "
                         f"{'' if pearson is None else f'{pearson:.3f}'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
