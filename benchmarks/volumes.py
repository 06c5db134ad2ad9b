"""Volumes larger than the model's patch: patch-aware HDM against whole-volume re-runs, and peak memory.

- Patch-aware HDM: a 96^3 field holding eight 3-D testnet volumes (seed 11, 2 x 2 x 2) is explained
  by HDM (spheres of 16 voxels, 16 apart: 216 masks) on the bundled 3-D U-Net, whose input is 48^3,
  so every image runs as 27 patches of 48^3 overlapping by half. Arm "reuse" re-runs only the
  patches a sphere touches (the default); arm "rerun" runs all 27 patches of every perturbed volume.
  Both maps must agree within 1e-5; the table gives each arm's patch passes and time.
- Memory: what predicting one volume of side 48, 96 or 192 (up to 4x the patch per axis, 64x its
  voxels) at patch batch 1, 4 and 16 adds to a fresh process's resident memory at its peak, beside
  the volume's own output arrays, which no patch scheme avoids.

Run:  python benchmarks/volumes.py   (about 3 minutes on 2 cores)
Writes benchmarks/results/volumes.md.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from onnxplain import data
from onnxplain.model import OnnxModel
from onnxplain.perturbation.hdm import Hdm
from onnxplain.testnet3d import make_volume

RESULTS = Path(__file__).resolve().parent / "results" / "volumes.md"


def field(side: int = 96) -> np.ndarray:
    """Testnet volumes tiled over a cube of `side` voxels (a multiple of 48), each from seed 11."""
    tiles = side // 48
    volume = np.zeros((side,) * 3, np.float32)
    for index in range(tiles ** 3):
        i, j, k = np.unravel_index(index, (tiles,) * 3)
        volume[48 * i:48 * (i + 1), 48 * j:48 * (j + 1), 48 * k:48 * (k + 1)] = make_volume(11, index).image
    return volume


def patch_aware_hdm() -> list[str]:
    volume = field(96)
    method = Hdm(circle_size=16, offset=16)
    results = {}
    for arm, reuse in (("reuse", True), ("rerun", False)):
        model = OnnxModel(data.testnet3d_model_path(), device="cpu", batch_size=8, reuse_patches=reuse)
        started = time.perf_counter()
        results[arm] = method.attribute(model, volume)
        results[arm].record["wall"] = time.perf_counter() - started
        print(arm, results[arm].record["patches"], f"{results[arm].record['wall']:.1f} s", flush=True)
    difference = float(np.abs(results["reuse"].map - results["rerun"].map).max())
    lines = ["## Patch-aware HDM on a 96^3 field (27 patches of 48^3)", "",
             f"{len(results['reuse'].values)} spheres; largest difference between the two maps: {difference:.2e}", "",
             "| arm | patch passes run | reused | seconds | speed-up |", "|---|---|---|---|---|"]
    base = results["rerun"].record["wall"]
    for arm, result in results.items():
        patches = result.record["patches"]
        lines.append(f"| {arm} | {patches['run']} | {patches['reused']} | {result.record['wall']:.1f} | "
                     f"{base / result.record['wall']:.2f}x |")
    return lines


def rss_mib() -> float:
    """This process's resident memory now, in MiB (Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2 ** 20


def added_peak(side: int, batch: int) -> float:
    """Memory (MiB) that predicting one volume of `side` at patch batch `batch` adds at its peak, in a fresh process.

    The model is loaded and the volume made first; a thread then samples the resident memory every
    millisecond while the volume is predicted, patch by patch.
    """
    here = str(Path(__file__).resolve().parent)
    code = (f"import sys, threading, time; sys.path.insert(0, {here!r}); from volumes import field, rss_mib; "
            "from onnxplain import data; from onnxplain.model import OnnxModel; "
            f"m = OnnxModel(data.testnet3d_model_path(), device='cpu', batch_size={batch}); "
            f"m.predict(field(48)[None, ..., None]); v = field({side})[None, ..., None]; before = rss_mib(); "
            "peak = [before]; done = threading.Event()\n"
            "def watch():\n"
            "    while not done.is_set():\n"
            "        peak[0] = max(peak[0], rss_mib()); time.sleep(0.001)\n"
            "t = threading.Thread(target=watch); t.start(); m.predict(v); done.set(); t.join()\n"
            "print(peak[0] - before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def memory_table() -> list[str]:
    lines = ["## Memory of one volume, patch by patch", "",
             "What predicting one volume adds to a process that has loaded the model and made the volume "
             "(resident memory sampled every millisecond). 'Output arrays' is what any scheme must hold for "
             "a whole volume: the blended output and the weights it divides by, and the probabilities read "
             "from it (float32); 'the rest' is the added peak less those: the patches in flight and the "
             "network's activations.", "",
             "| side | voxels / patch | patch batch | added peak MiB | output arrays MiB | the rest MiB |",
             "|---|---|---|---|---|---|"]
    for side in (48, 96, 192):
        arrays = 3 * side ** 3 * 4 / 2 ** 20
        for batch in (1, 4, 16):
            peak = added_peak(side, batch)
            lines.append(f"| {side} | {side ** 3 // 48 ** 3} | {batch} | {peak:.0f} | {arrays:.0f} | "
                         f"{peak - arrays:.0f} |")
            print(lines[-1], flush=True)
    return lines


def main() -> None:
    lines = ["# Volumes larger than the patch", "", "Written by `python benchmarks/volumes.py` on "
             f"{json.dumps(sys.platform)} (2 CPU cores, onnxruntime CPU).", ""]
    lines += patch_aware_hdm() + [""] + memory_table()
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}; this process peaked at "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
