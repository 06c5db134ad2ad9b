"""Whole explanations of the real pretrained models on each device, against the bare runtime there.

For each real model (`benchmarks/real_models.py`: the text detector on the rendered lines, 256x512,
and the selfie segmenter on the astronaut, 256x256) and each method, on each device asked for: the
explanation's wall time, and onnxruntime's own ``run`` on the same number of that method's
perturbed images, prepared as input tensors before any timing (bare, explain, bare, ... as in
`speed.py`; the ratio is explain / mean of the bare runs just before and after, median of the
repeats). With two devices the table gives the speed-up of the second over the first for a whole
explanation. The models must be in ``.cache/real-models`` (``python benchmarks/real_models.py``).

Run: python benchmarks/real_model_speed.py --devices cpu cuda [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import real_models
from speed import bare_seconds, machine, prepared_tensor

import onnxplain
from onnxplain.model import OnnxModel

BATCH_SIZE = 16
IMAGES = {"text": "lines", "person": "astronaut"}
METHODS = {
    "hdm": {"circle_size": 25, "offset": 16},
    "rise": {"n_masks": 500},
    "occlusion": {"window": 32, "stride": 16},
    "kernel-shap": {"n_samples": 500},
}
WARM = {"hdm": {"circle_size": 25, "offset": 64}, "rise": {"n_masks": 32}, "occlusion": {"window": 64, "stride": 64},
        "kernel-shap": {"n_samples": 32}}


def measure(name: str, device: str, repeats: int) -> dict:
    """Explanation and bare seconds of every method on model `name`, run on `device`."""
    spec = real_models.MODELS[name]
    model = OnnxModel(real_models.fetch(name, check_parity=False), device=device, batch_size=BATCH_SIZE,
                      **spec.onnxplain_options())
    image = model.check_image(real_models.image(IMAGES[name]))
    for method, params in WARM.items():
        onnxplain.create_method(method, **params).attribute(model, image)
    rows = {}
    for method, params in METHODS.items():
        tensor = prepared_tensor(model, onnxplain.create_method(method, **params), image, BATCH_SIZE)
        images = onnxplain.create_method(method, **params).count(image)
        bare = [bare_seconds(model, tensor, images, BATCH_SIZE)]
        explain, ratios = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            onnxplain.create_method(method, **params).attribute(model, image)
            explain.append(time.perf_counter() - started)
            bare.append(bare_seconds(model, tensor, images, BATCH_SIZE))
            ratios.append(explain[-1] / ((bare[-2] + bare[-1]) / 2))
        rows[method] = {"parameters": params, "images": images, "explain_seconds": statistics.median(explain),
                        "bare_seconds": statistics.median(bare), "ratio_median": statistics.median(ratios),
                        "runs_explain_seconds": explain, "runs_bare_seconds": bare}
        row = rows[method]
        print(f"{name:6s} {device:4s} {method:12s} {images:5d} images: explain {row['explain_seconds']:.2f} s, "
              f"bare {row['bare_seconds']:.2f} s, ratio {row['ratio_median']:.2f}", flush=True)
    return {"providers": model.providers, "image": IMAGES[name], "input_shape": list(image.shape), "methods": rows}


def markdown(record: dict) -> str:
    devices = record["devices"]
    head = " | ".join(f"{d} explain s (bare s, ratio)" for d in devices)
    lines = [f"| model | method | images | {head} |" + (f" {devices[-1]} speed-up |" if len(devices) > 1 else ""),
             "|---|---|---|" + "---|" * len(devices) + ("---|" if len(devices) > 1 else "")]
    for name in IMAGES:
        for method in METHODS:
            rows = [record["results"][name][d]["methods"][method] for d in devices]
            cells = " | ".join(f"{r['explain_seconds']:.2f} ({r['bare_seconds']:.2f}, {r['ratio_median']:.2f})"
                               for r in rows)
            speedup = (f" **{rows[0]['explain_seconds'] / rows[-1]['explain_seconds']:.1f}x** |"
                       if len(devices) > 1 else "")
            lines.append(f"| {name} | {method} | {rows[0]['images']} | {cells} |{speedup}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", nargs="+", choices=("cpu", "cuda"), default=["cpu"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "real_model_speed.json")
    args = parser.parse_args()
    record = {"machine": machine(), "devices": args.devices, "batch_size": BATCH_SIZE, "repeats": args.repeats,
              "results": {name: {d: measure(name, d, args.repeats) for d in args.devices} for name in IMAGES}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print()
    print(markdown(record))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
