"""Explainer overhead, time outside inference, and memory, for every method, on the bundled testnet model.

Overhead. For each method, a whole explanation (``method.attribute``, superpixels and the
unperturbed forward pass included) is timed against the bare model on the same number of perturbed
images: onnxruntime's own ``session.run`` (``OnnxModel.run_tensor``) on one batch of real perturbed
images of that method, turned into the model's input tensor once, before any timing. The arms
alternate bare, explain, bare, explain, ..., bare, so every explanation has a bare timing just
before and just after it; its ratio is explain / mean(bare before, bare after). This is done at
batch 16 and on a copy of the model whose batch is fixed to 1 (fewer images per method there): that
model runs one image per onnxruntime call, in both arms, while the explanation still prepares,
scores and aggregates 16 images per step.

Outside inference. ``(attr.seconds['total'] - attr.seconds['inference']) / images``: the time the
explainer itself costs per perturbed image, which is what remains once a fast GPU makes inference
nearly free.

Memory. Each method runs in a fresh child process at 1x and at about 8x its samples; the child
loads the model, warms up, resets its peak resident set (``/proc/self/clear_refs``: loading
onnxruntime peaks far above any explanation and would hide it), then reports the peak resident set
of the explanation (VmHWM; ``ru_maxrss``, the whole process's peak, is kept too) and tracemalloc's
peak during it. RISE's per-pixel max is compared with plain RISE the same way, against its documented
budget (plain + ``per_pixel_memory`` + one float32 per mask and region pixel).

Device. ``--device cuda`` runs both arms on onnxruntime's CUDA provider (the bare arm's ``run``
then includes copying the batch to the GPU and the outputs back, as an explanation's does) and, with
``--compare-cpu``, times the same explanations on the CPU of that machine, for the speed-up CUDA gives
a whole explanation. Memory is a CPU-side measure; ``--skip-memory`` leaves it out.

Run: python benchmarks/speed.py [--repeats 3] [--out benchmarks/results/speed.json]
     python benchmarks/speed.py --device cuda --compare-cpu --skip-memory --out benchmarks/results/speed_cuda.json
     python benchmarks/speed.py --profile rise [--batch 1]   (cProfile of one explanation)
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.metadata
import json
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

import onnxplain
from onnxplain import data
from onnxplain.model import OnnxModel
from onnxplain.perturbation.fill import fill_image

BATCH_SIZE = 16
MIB = 2**20
MEMORY_TARGET_BYTES = 50 * 10**6  # "within 50 MB"
RATIO_TARGET = {16: 1.10, 1: 1.25}

# name: parameters at batch 16, at batch 1 (fewer images), for memory at 1x and at ~8x, and a tiny
# warm-up run (imports, onnxruntime's first passes, caches) that is not timed.
METHODS: dict[str, dict[str, dict]] = {
    "hdm": {
        "b16": {"circle_size": 25, "offset": 5},
        "b1": {"circle_size": 25, "offset": 10},
        "mem1": {"circle_size": 25, "offset": 20},
        "mem8": {"circle_size": 25, "offset": 7},
        "warm": {"circle_size": 25, "offset": 40},
    },
    "rise": {
        "b16": {"n_masks": 2000},
        "b1": {"n_masks": 500},
        "mem1": {"n_masks": 500},
        "mem8": {"n_masks": 4000},
        "warm": {"n_masks": 32},
    },
    "occlusion": {
        "b16": {},
        "b1": {"stride": 16},
        "mem1": {"stride": 16},
        "mem8": {"stride": 5},
        "warm": {"window": 48, "stride": 48},
    },
    "ablation": {
        "b16": {"n_segments": 200},
        "b1": {"n_segments": 200},
        "mem1": {"n_segments": 25},
        "mem8": {"n_segments": 200},
        "warm": {"n_segments": 25},
    },
    "lime": {
        "b16": {"n_samples": 2000},
        "b1": {"n_samples": 500},
        "mem1": {"n_samples": 250},
        "mem8": {"n_samples": 2000},
        "warm": {"n_samples": 32},
    },
    "kernel-shap": {
        "b16": {"n_samples": 2000},
        "b1": {"n_samples": 500},
        "mem1": {"n_samples": 250},
        "mem8": {"n_samples": 2000},
        "warm": {"n_samples": 32},
    },
    "shapley": {
        "b16": {"n_permutations": 20},
        "b1": {"n_permutations": 5},
        "mem1": {"n_permutations": 3},
        "mem8": {"n_permutations": 24},
        "warm": {"n_permutations": 1, "n_segments": 25},
    },
}
PER_PIXEL_MASKS = 1000


def _describe(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"


def _image(model: OnnxModel) -> np.ndarray:
    return model.check_image(data.load_sample(0).image)


# --- models -------------------------------------------------------------------------------------


def fixed_batch_model(folder: Path) -> tuple[Path, bool]:
    """A copy of testnet whose input and output batch is fixed to 1; (path, True) when onnx could make it."""
    try:
        import onnx
    except ImportError:
        return data.testnet_model_path(), False
    graph = onnx.load(str(data.testnet_model_path()))
    for value in (*graph.graph.input, *graph.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = 1
    path = folder / "testnet_batch1.onnx"
    onnx.save(graph, str(path))
    return path, True


# --- overhead -----------------------------------------------------------------------------------


def prepared_tensor(model: OnnxModel, method, image: np.ndarray, batch_size: int) -> np.ndarray:
    """One batch of real perturbed images of `method`, as the model's input tensor (made before timing)."""
    source = method.mask_source(image)
    masks = source.batch(0, min(batch_size, len(source))).masks
    if len(masks) < batch_size:  # a source with fewer masks than a batch: repeat them
        masks = np.resize(masks, (batch_size, *masks.shape[1:]))
    fill = fill_image(image, method.fill, blur_sigma=method.blur_sigma)
    return model.to_tensor(method.apply(image, masks, fill))


def bare_seconds(model: OnnxModel, tensor: np.ndarray, total: int, batch_size: int) -> float:
    """onnxruntime alone on `total` images, `batch_size` per run, from the prepared `tensor`.

    On CUDA the last run is a full batch too, as explanations run it (a new input shape costs
    onnxruntime a new convolution search there).
    """
    last = batch_size if model.device == "cuda" else total % batch_size or batch_size
    parts = [tensor[: batch_size if start + batch_size < total else last] for start in range(0, total, batch_size)]
    with threadpool_limits(limits=1, user_api="blas"):  # the conditions explanations run in
        started = time.perf_counter()
        for part in parts:
            model.run_tensor(part)
        return time.perf_counter() - started


def warm_up(model: OnnxModel, image: np.ndarray, batch_size: int) -> None:
    for name, cases in METHODS.items():
        onnxplain.create_method(name, **cases["warm"]).attribute(model, image, batch_size=batch_size)


def overhead(model: OnnxModel, case: str, repeats: int, names: list[str]) -> dict:
    """Bare, explain, bare, ... for each method; ratios against the mean of the bare runs around each.

    The explanation streams `model.batch_size` images per step; onnxruntime runs as many as the
    model takes at once (1 for a model whose batch is fixed to 1), in the bare arm as in the
    explanation.
    """
    image = _image(model)
    step = model.batch_size
    batch_size = model.input.batch or step  # images per onnxruntime run
    warm_up(model, image, step)
    results = {}
    for name in names:
        params = METHODS[name][case]
        tensor = prepared_tensor(model, onnxplain.create_method(name, **params), image, step)
        bare = []
        runs = []
        load_before = os.getloadavg()
        for _ in range(repeats):
            if not bare:
                total = onnxplain.create_method(name, **params).count(image)
                bare.append(bare_seconds(model, tensor, total, batch_size))
            method = onnxplain.create_method(name, **params)  # fresh: superpixels are part of the cost
            started = time.perf_counter()
            attr = method.attribute(model, image)
            explain = time.perf_counter() - started
            images = len(attr.values)
            seconds = attr.seconds
            del attr
            bare.append(bare_seconds(model, tensor, images, batch_size))
            reference = (bare[-2] + bare[-1]) / 2
            runs.append({
                "explain_seconds": explain,
                "attr_total_seconds": seconds["total"],
                "attr_inference_seconds": seconds["inference"],
                "bare_before_seconds": bare[-2],
                "bare_after_seconds": bare[-1],
                "ratio": explain / reference,
                "outside_inference_ms_per_image": 1000 * (seconds["total"] - seconds["inference"]) / images,
            })
        ratios = [r["ratio"] for r in runs]
        results[name] = {
            "parameters": params,
            "images": images,
            "explain_seconds": statistics.median(r["explain_seconds"] for r in runs),
            "bare_seconds": statistics.median((r["bare_before_seconds"] + r["bare_after_seconds"]) / 2 for r in runs),
            "inference_in_explanation_seconds": statistics.median(r["attr_inference_seconds"] for r in runs),
            "ratio_median": statistics.median(ratios),
            "ratio_worst": max(ratios),
            "outside_inference_ms_per_image": statistics.median(r["outside_inference_ms_per_image"] for r in runs),
            "target": RATIO_TARGET[batch_size],
            "load_average_before_after": [load_before, os.getloadavg()],
            "runs": runs,
        }
        row = results[name]
        print(f"batch {batch_size:2d} {name:12s} {images:5d} images: explain {row['explain_seconds']:.2f} s, "
              f"bare {row['bare_seconds']:.2f} s, ratio {row['ratio_median']:.3f} (worst {row['ratio_worst']:.3f}), "
              f"outside inference {row['outside_inference_ms_per_image']:.2f} ms/img", flush=True)
    return results


def batching(fixed_path: Path, device: str, count: int = 256, rounds: int = 3) -> dict:
    """Throughput of the bare model on prepared tensors, one image per run and 16 per run (rounds interleaved)."""
    arms = {}
    for label, path, batch_size in (("dynamic batch, 1 per run", data.testnet_model_path(), 1),
                                    (f"dynamic batch, {BATCH_SIZE} per run", data.testnet_model_path(), BATCH_SIZE),
                                    ("batch fixed to 1", fixed_path, 1)):
        model = OnnxModel(path, device=device, batch_size=batch_size)
        tensor = model.to_tensor(np.repeat(_image(model)[None], batch_size, axis=0))
        bare_seconds(model, tensor, 4 * batch_size, batch_size)  # warm
        arms[label] = (model, tensor, batch_size)
    times: dict[str, list[float]] = {label: [] for label in arms}
    for _ in range(rounds):
        for label, (model, tensor, batch_size) in arms.items():
            times[label].append(bare_seconds(model, tensor, count, batch_size))
    rates = {label: count / statistics.median(t) for label, t in times.items()}
    for label, rate in rates.items():
        print(f"bare model, {label}: {rate:.1f} images/s", flush=True)
    return {"images": count, "rounds": rounds, "images_per_second": rates,
            "speedup_16_over_1": rates[f"dynamic batch, {BATCH_SIZE} per run"] / rates["dynamic batch, 1 per run"]}


# --- memory -------------------------------------------------------------------------------------


def _rss_bytes(field: str) -> int | None:
    """VmRSS or VmHWM (peak) of this process from /proc, in bytes; None where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Forget the peak resident set so far (Linux: ``echo 5 > /proc/self/clear_refs``), so that
    VmHWM afterwards is the peak of what follows, not of loading the model."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child_memory(spec: dict) -> None:
    """In a fresh process: one explanation; print a JSON line of its peak memory."""
    model = OnnxModel(data.testnet_model_path(), device="cpu", batch_size=BATCH_SIZE)
    image = _image(model)
    onnxplain.create_method(spec["name"], **METHODS[spec["name"]]["warm"]).attribute(model, image)
    method = onnxplain.create_method(spec["name"], **spec["params"])
    gc.collect()
    load_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    reset = _reset_peak_rss()
    rss_before = _rss_bytes("VmRSS")
    tracemalloc.start()
    started = time.perf_counter()
    attr = method.attribute(model, image, batch_size=BATCH_SIZE)
    seconds = time.perf_counter() - started
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    region = attr.region if attr.region is not None else attr.segment
    print(json.dumps({
        "images": len(attr.values),
        "peak_rss_reset": reset,
        # VmHWM is the peak since the reset; ru_maxrss also keeps the peaks of threads that ended
        # while loading, so it is the peak of the whole process.
        "peak_rss_bytes": (_rss_bytes("VmHWM") if reset else None)
        or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "process_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_rss_before_explanation_bytes": load_peak,
        "rss_before_bytes": rss_before,
        "traced_peak_bytes": traced_peak,
        "region_pixels": int(np.count_nonzero(region)),
        "seconds": seconds,
    }))


def run_child(name: str, params: dict) -> dict:
    spec = json.dumps({"name": name, "params": params})
    done = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"memory child {name} {params} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory(names: list[str]) -> dict:
    results = {}
    for name in names:
        one, eight = (run_child(name, METHODS[name][k]) for k in ("mem1", "mem8"))
        rss_diff = eight["peak_rss_bytes"] - one["peak_rss_bytes"]
        traced_diff = eight["traced_peak_bytes"] - one["traced_peak_bytes"]
        results[name] = {
            "parameters": {"1x": METHODS[name]["mem1"], "8x": METHODS[name]["mem8"]},
            "images": {"1x": one["images"], "8x": eight["images"]},
            "peak_rss_is_explanation_only": one["peak_rss_reset"] and eight["peak_rss_reset"],
            "peak_rss_mib": {"1x": one["peak_rss_bytes"] / MIB, "8x": eight["peak_rss_bytes"] / MIB},
            "rss_before_explanation_mib": {k: (c["rss_before_bytes"] or 0) / MIB
                                           for k, c in (("1x", one), ("8x", eight))},
            "peak_rss_loading_and_warm_up_mib": {"1x": one["peak_rss_before_explanation_bytes"] / MIB,
                                                 "8x": eight["peak_rss_before_explanation_bytes"] / MIB},
            "process_peak_rss_ru_maxrss_mib": {"1x": one["process_peak_rss_bytes"] / MIB,
                                               "8x": eight["process_peak_rss_bytes"] / MIB},
            "traced_peak_mib": {"1x": one["traced_peak_bytes"] / MIB, "8x": eight["traced_peak_bytes"] / MIB},
            "rss_difference_mib": rss_diff / MIB,
            "traced_difference_mib": traced_diff / MIB,
            "seconds": {"1x": one["seconds"], "8x": eight["seconds"]},
            "within_50_mb": max(rss_diff, traced_diff) <= MEMORY_TARGET_BYTES,
        }
        row = results[name]
        print(f"memory {name:12s} {one['images']:5d} vs {eight['images']:5d} images: peak RSS "
              f"{row['peak_rss_mib']['1x']:.1f} vs {row['peak_rss_mib']['8x']:.1f} MiB "
              f"({row['rss_difference_mib']:+.1f}), traced {row['traced_peak_mib']['1x']:.1f} vs "
              f"{row['traced_peak_mib']['8x']:.1f} MiB ({row['traced_difference_mib']:+.1f})", flush=True)
    return results


def per_pixel_memory() -> dict:
    """RISE with per_pixel_max against plain RISE, same masks, against the documented budget."""
    budget = onnxplain.create_method("rise").per_pixel_memory
    plain = run_child("rise", {"n_masks": PER_PIXEL_MASKS})
    merged = run_child("rise", {"n_masks": PER_PIXEL_MASKS, "per_pixel_max": True})
    scores_bytes = PER_PIXEL_MASKS * merged["region_pixels"] * 4
    allowed_rss = plain["peak_rss_bytes"] + budget + scores_bytes
    allowed_traced = plain["traced_peak_bytes"] + budget + scores_bytes
    result = {
        "masks": PER_PIXEL_MASKS,
        "region_pixels": merged["region_pixels"],
        "per_pixel_memory_mib": budget / MIB,
        "scores_mib": scores_bytes / MIB,
        "peak_rss_is_explanation_only": plain["peak_rss_reset"] and merged["peak_rss_reset"],
        "peak_rss_mib": {"plain": plain["peak_rss_bytes"] / MIB, "per_pixel_max": merged["peak_rss_bytes"] / MIB},
        "traced_peak_mib": {"plain": plain["traced_peak_bytes"] / MIB,
                            "per_pixel_max": merged["traced_peak_bytes"] / MIB},
        "seconds": {"plain": plain["seconds"], "per_pixel_max": merged["seconds"]},
        "allowed_peak_rss_mib": allowed_rss / MIB,
        "allowed_traced_peak_mib": allowed_traced / MIB,
        "within_budget_rss": merged["peak_rss_bytes"] <= allowed_rss,
        "within_budget_traced": merged["traced_peak_bytes"] <= allowed_traced,
    }
    print(f"RISE per-pixel max, {PER_PIXEL_MASKS} masks, {merged['region_pixels']} region pixels: peak RSS "
          f"{result['peak_rss_mib']['per_pixel_max']:.1f} MiB vs plain {result['peak_rss_mib']['plain']:.1f} MiB, "
          f"allowed {result['allowed_peak_rss_mib']:.1f} MiB "
          f"(plain + {result['per_pixel_memory_mib']:.0f} MiB budget + "
          f"{result['scores_mib']:.1f} MiB scores): {'within' if result['within_budget_rss'] else 'OVER'}; traced "
          f"{result['traced_peak_mib']['per_pixel_max']:.1f} vs {result['traced_peak_mib']['plain']:.1f} MiB, allowed "
          f"{result['allowed_traced_peak_mib']:.1f}: {'within' if result['within_budget_traced'] else 'OVER'}; time "
          f"{result['seconds']['per_pixel_max']:.1f} vs {result['seconds']['plain']:.1f} s", flush=True)
    return result


# --- report -------------------------------------------------------------------------------------


def memory_markdown(record: dict) -> list[str]:
    lines = []
    lines += ["**Peak memory, 1x vs ~8x the samples** (fresh process each; peak RSS of the explanation, "
              "counted from after loading and warm-up; target: within 50 MB):", "",
              "| method | 1x → 8x | images | peak RSS MiB (diff) | tracemalloc peak MiB (diff) | within 50 MB |",
              "|---|---|---|---|---|---|"]
    for name, row in record["memory"].items():
        lines.append(f"| {name} | {_describe(row['parameters']['1x'])} → {_describe(row['parameters']['8x'])} | "
                     f"{row['images']['1x']} → {row['images']['8x']} | "
                     f"{row['peak_rss_mib']['1x']:.1f} → {row['peak_rss_mib']['8x']:.1f} "
                     f"({row['rss_difference_mib']:+.1f}) | {row['traced_peak_mib']['1x']:.1f} → "
                     f"{row['traced_peak_mib']['8x']:.1f} ({row['traced_difference_mib']:+.1f}) | "
                     f"{'yes' if row['within_50_mb'] else 'no'} |")
    p = record["rise_per_pixel_max"]
    lines += ["", f"RISE per-pixel max, {p['masks']} masks, {p['region_pixels']} region pixels, against plain RISE: "
              f"peak RSS {p['peak_rss_mib']['per_pixel_max']:.1f} vs {p['peak_rss_mib']['plain']:.1f} MiB, tracemalloc "
              f"peak {p['traced_peak_mib']['per_pixel_max']:.1f} vs {p['traced_peak_mib']['plain']:.1f} MiB; allowed: "
              f"plain + {p['per_pixel_memory_mib']:.0f} MiB budget + {p['scores_mib']:.1f} MiB scores = "
              f"{p['allowed_peak_rss_mib']:.1f} MiB RSS ({'within' if p['within_budget_rss'] else 'OVER'}), "
              f"{p['allowed_traced_peak_mib']:.1f} MiB traced ({'within' if p['within_budget_traced'] else 'OVER'}); "
              f"{p['seconds']['per_pixel_max']:.1f} s vs {p['seconds']['plain']:.1f} s."]
    return lines


def markdown(record: dict) -> str:
    lines = []
    for key, title in (("overhead_batch16", f"Batch {BATCH_SIZE} (target ratio <= {RATIO_TARGET[16]:.2f})"),
                       ("overhead_batch1", f"Batch fixed to 1 (target ratio <= {RATIO_TARGET[1]:.2f})")):
        lines += [f"**{title}**, median of {record['repeats']} (bare: mean of the runs just before and after):", "",
                  "| method | images | explain s | bare s | ratio median; worst | outside inference ms/img |",
                  "|---|---|---|---|---|---|"]
        for name, row in record[key].items():
            lines.append(f"| {name} ({_describe(row['parameters'])}) | {row['images']} | "
                         f"{row['explain_seconds']:.2f} | "
                         f"{row['bare_seconds']:.2f} | **{row['ratio_median']:.2f}**; {row['ratio_worst']:.2f} | "
                         f"{row['outside_inference_ms_per_image']:.2f} |")
        lines.append("")
    if "overhead_batch16_cpu" in record:
        lines += [f"**CUDA against this machine's CPU** ({record['machine']['cpu_count']} cores), batch {BATCH_SIZE}, "
                  "whole explanations, median of each:", "",
                  "| method | images | CPU s | CUDA s | CUDA speed-up |", "|---|---|---|---|---|"]
        for name, row in record["overhead_batch16"].items():
            cpu = record["overhead_batch16_cpu"][name]
            lines.append(f"| {name} | {row['images']} | {cpu['explain_seconds']:.2f} | {row['explain_seconds']:.2f} | "
                         f"**{cpu['explain_seconds'] / row['explain_seconds']:.1f}x** |")
        lines.append("")
    if "memory" in record:
        lines += memory_markdown(record)
    b = record["batching"]["images_per_second"]
    lines += ["", "Bare model throughput on prepared tensors: " + "; ".join(f"{k}: {v:.0f} img/s" for k, v in b.items())
              + f" ({BATCH_SIZE} per run / 1 per run: {record['batching']['speedup_16_over_1']:.2f}x)."]
    return "\n".join(lines)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    ort = None
    for distribution in ("onnxruntime", "onnxruntime-gpu"):
        try:
            ort = f"{distribution} {importlib.metadata.version(distribution)}"
            break
        except importlib.metadata.PackageNotFoundError:
            pass
    gpu = None
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "gpu": gpu, "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__, "onnxruntime": ort,
            "onnxplain": onnxplain.__version__}


def profile(name: str, batch_size: int) -> None:
    with tempfile.TemporaryDirectory() as folder:  # the model file must stay: records read its hash
        path = fixed_batch_model(Path(folder))[0] if batch_size == 1 else data.testnet_model_path()
        model = OnnxModel(path, device="cpu", batch_size=batch_size)
        image = _image(model)
        warm_up(model, image, batch_size)
        method = onnxplain.create_method(name, **METHODS[name]["b1" if batch_size == 1 else "b16"])
        profiler = cProfile.Profile()
        profiler.enable()
        attr = method.attribute(model, image, batch_size=batch_size)
        profiler.disable()
    print(f"{name}, batch {batch_size}: {len(attr.values)} images, seconds {attr.seconds}")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "speed.json")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--profile", choices=list(METHODS), help="cProfile one explanation and stop")
    parser.add_argument("--batch", type=int, choices=(1, BATCH_SIZE), default=BATCH_SIZE,
                        help="with --profile: batch 16, or the model with its batch fixed to 1")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="onnxruntime provider of both arms")
    parser.add_argument("--compare-cpu", action="store_true",
                        help="with --device cuda: the same explanations at batch 16 on this machine's CPU too")
    parser.add_argument("--skip-memory", action="store_true", help="leave out the memory measures")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_memory(json.loads(args.child))
        return
    if args.profile:
        profile(args.profile, args.batch)
        return
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        fixed_path, fixed = fixed_batch_model(Path(folder))
        record = {
            "machine": machine(),
            "repeats": args.repeats,
            "batch_size": BATCH_SIZE,
            "load_average_at_start": os.getloadavg(),
            "batch1_model": "testnet with its batch fixed to 1" if fixed else "testnet (dynamic batch), batch_size=1",
        }
        model = OnnxModel(data.testnet_model_path(), device=args.device, batch_size=BATCH_SIZE)
        record["device"] = args.device
        record["machine"]["providers"] = model.providers
        record["overhead_batch16"] = overhead(model, "b16", args.repeats, args.methods)
        # A model fixed to batch 1 runs one image per onnxruntime call; the explanation still streams
        # BATCH_SIZE images per step, so its own work is shared by them.
        model1 = OnnxModel(fixed_path, device=args.device, batch_size=BATCH_SIZE)
        record["overhead_batch1"] = overhead(model1, "b1", args.repeats, args.methods)
        record["batching"] = batching(fixed_path, args.device)
        if args.compare_cpu and args.device != "cpu":
            cpu_model = OnnxModel(data.testnet_model_path(), device="cpu", batch_size=BATCH_SIZE)
            record["overhead_batch16_cpu"] = overhead(cpu_model, "b16", args.repeats, args.methods)
    if not args.skip_memory:
        record["memory"] = memory(args.methods)
        record["rise_per_pixel_max"] = per_pixel_memory()
    record["load_average_at_end"] = os.getloadavg()
    record["seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print()
    print(markdown(record))
    print()
    print(f"wrote {args.out} ({record['seconds'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
