"""Explainer overhead and memory, measured against the bare model in the same process.

For each method it times a whole explanation, then the bare model on the same number of perturbed
images at the same batch size (one batch of real perturbed images, run as many times as the
explanation ran batches), alternating the two `--repeats` times. The ratio explain / bare is the
overhead; 1.00 means the explainer costs nothing beyond inference. Peak memory of RISE is measured
in child processes (their maximum resident set size), for 1000 and 8000 masks.

Run: python benchmarks/speed.py [--repeats 3] [--out benchmarks/results/speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

import onnxplain
from onnxplain import data
from onnxplain.hdm import HdmPerturbation
from onnxplain.model import OnnxModel
from onnxplain.rise import RisePerturbation

BATCH_SIZE = 16
CASES = {
    "HDM, 240x240, circle 25, offset 5": lambda: HdmPerturbation(circle_size=25, offset=5),
    "RISE, 2000 masks": lambda: RisePerturbation(n_masks=2000),
}


def bare_inference_seconds(model: OnnxModel, perturbation, image: np.ndarray, total: int) -> float:
    """Time the model alone on `total` perturbed images, `BATCH_SIZE` per forward pass."""
    masks = perturbation.make_masks(image.shape[:2], 0, BATCH_SIZE, seed=0)
    batch = perturbation.apply_mask(image, masks)
    started = time.perf_counter()
    for start in range(0, total, BATCH_SIZE):
        model.predict(batch[: min(BATCH_SIZE, total - start)])
    return time.perf_counter() - started


def overhead(repeats: int) -> dict:
    model = OnnxModel(data.testnet_model_path(), device="cpu", batch_size=BATCH_SIZE)
    image = model.check_image(data.load_sample(0).image)
    results = {}
    for name, make in CASES.items():
        ratios, explain_times, bare_times = [], [], []
        for _ in range(repeats):
            perturbation = make()
            started = time.perf_counter()
            explanation = onnxplain.explain(model, image, method=perturbation, batch_size=BATCH_SIZE)
            explain_seconds = time.perf_counter() - started
            bare_seconds = bare_inference_seconds(model, perturbation, image, len(explanation.distances))
            ratios.append(explain_seconds / bare_seconds)
            explain_times.append(explain_seconds)
            bare_times.append(bare_seconds)
        results[name] = {
            "masks": len(explanation.distances),
            "explain_seconds": statistics.median(explain_times),
            "bare_inference_seconds": statistics.median(bare_times),
            "ratio_median": statistics.median(ratios),
            "ratio_max": max(ratios),
            "images_per_second": len(explanation.distances) / statistics.median(explain_times),
        }
        print(f"{name}: {results[name]}", flush=True)
    return results


def batching(count: int = 256) -> dict:
    """Throughput of the bare model one image per forward pass (as the 2019 code ran) and in batches."""
    rates = {}
    for batch_size in (1, BATCH_SIZE):
        model = OnnxModel(data.testnet_model_path(), device="cpu", batch_size=batch_size)
        images = np.repeat(model.check_image(data.load_sample(0).image)[None], count, axis=0)
        model.predict(images[:batch_size])
        started = time.perf_counter()
        model.predict(images)
        rates[batch_size] = count / (time.perf_counter() - started)
        print(f"bare model, batch {batch_size}: {rates[batch_size]:.1f} images/s", flush=True)
    return {"images_per_second": rates, "speedup": rates[BATCH_SIZE] / rates[1]}


def rise_peak_memory(n_masks: int) -> None:
    """Child process: run RISE with `n_masks` masks; print peak RSS and peak traced allocations, in MiB.

    The resident set size covers everything (onnxruntime's arena included); tracemalloc's peak
    covers what Python and NumPy allocate during the explanation itself.
    """
    model = OnnxModel(data.testnet_model_path(), device="cpu", batch_size=BATCH_SIZE)
    image = data.load_sample(0).image
    onnxplain.explain(model, image, method=RisePerturbation(n_masks=BATCH_SIZE))  # warm onnxruntime up
    tracemalloc.start()
    onnxplain.explain(model, image, method=RisePerturbation(n_masks=n_masks))
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, traced_peak / 2**20)


def memory() -> dict:
    rss, traced = {}, {}
    for n_masks in (1000, 8000):
        output = subprocess.run([sys.executable, __file__, "--rise-memory", str(n_masks)],
                                check=True, capture_output=True, text=True).stdout
        rss[n_masks], traced[n_masks] = map(float, output.strip().splitlines()[-1].split())
        print(f"RISE {n_masks} masks: peak RSS {rss[n_masks]:.1f} MiB, peak traced {traced[n_masks]:.1f} MiB",
              flush=True)
    return {
        "peak_rss_mib": rss,
        "rss_difference_mib": rss[8000] - rss[1000],
        "peak_traced_mib": traced,
        "traced_difference_mib": traced[8000] - traced[1000],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "speed.json")
    parser.add_argument("--rise-memory", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rise_memory:
        rise_peak_memory(args.rise_memory)
        return
    record = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "batch_size": BATCH_SIZE,
        "overhead": overhead(args.repeats),
        "batching": batching(),
        "rise_memory": memory(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
