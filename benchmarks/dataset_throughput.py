"""Images per second of ``onnxplain explain --dataset`` on the local engine and on a local Ray with 2 workers.

50 testnet images, each command run as a user runs it (its own process), the arms interleaved
(local, ray, local, ray...) so that both see the same machine. Two figures per run:

- end to end: images over the command's wall time, start-up included (Python, onnxruntime, and for
  Ray starting a local cluster and its workers);
- steady: images per second once results flow, from the times the first and the last result
  folders were written (``explanation.json``'s modification time), which leaves start-up out.

Two methods: occlusion with 60-pixel windows (16 forward passes per image, so writing the pictures
weighs most) and with 20-pixel windows (144 passes, inference weighs most).

Run:  python benchmarks/dataset_throughput.py   (about 6 minutes on 2 cores; needs onnxplain[ray])
Writes benchmarks/results/dataset_throughput.md.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from onnxplain import data, testnet

COUNT = 50
ROUNDS = 2
METHODS = {
    "occlusion, 60-pixel windows (16 passes/image)": ("--method", "occlusion", "-p", "window=60", "-p", "stride=60"),
    "occlusion, 20-pixel windows (144 passes/image)": ("--method", "occlusion", "-p", "window=20", "-p", "stride=20"),
}
ENGINES = {"local": (), "ray, 2 workers": ("--engine", "ray", "--workers", "2")}
RESULT = Path(__file__).resolve().parent / "results" / "dataset_throughput.md"


def measure(dataset: Path, out: Path, method: tuple[str, ...], engine: tuple[str, ...]) -> tuple[float, float]:
    """(end-to-end images/s, steady images/s) of one run."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "onnxplain", "explain", str(data.testnet_model_path()), "--dataset",
               str(dataset), *method, *engine, "--out", str(out)]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - started
    written = sorted((folder / "explanation.json").stat().st_mtime for folder in out.iterdir() if folder.is_dir())
    assert len(written) == COUNT, f"{len(written)} results"
    return COUNT / wall, (COUNT - 1) / (written[-1] - written[0])


def main() -> None:
    with tempfile.TemporaryDirectory() as temporary:
        dataset = testnet.write_dataset(Path(temporary) / "set", COUNT, seed=0)
        figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for method_name, method in METHODS.items():
            for round_ in range(ROUNDS):
                for engine_name, engine in ENGINES.items():  # interleaved: each round runs both
                    rates = measure(dataset, Path(temporary) / "out", method, engine)
                    figures.setdefault((method_name, engine_name), []).append(rates)
                    print(f"{method_name}, {engine_name}, round {round_ + 1}: {rates[0]:.2f} images/s end to end, "
                          f"{rates[1]:.2f} steady", flush=True)
    lines = [
        "# Dataset throughput: local engine and Ray",
        "",
        f"`python benchmarks/dataset_throughput.py`: {COUNT} testnet images, `onnxplain explain --dataset` in its "
        f"own process, {ROUNDS} rounds with the arms interleaved; median of the rounds. Machine: {os.cpu_count()} "
        f"CPU cores, no GPU, {platform.platform()}.",
        "",
        "| method | engine | images/s end to end | images/s steady | Ray / local (steady) |",
        "|---|---|---|---|---|",
    ]
    for method_name in METHODS:
        local = statistics.median(rate for _, rate in figures[(method_name, "local")])
        for engine_name in ENGINES:
            runs = figures[(method_name, engine_name)]
            end_to_end = statistics.median(rate for rate, _ in runs)
            steady = statistics.median(rate for _, rate in runs)
            lines.append(f"| {method_name} | {engine_name} | {end_to_end:.2f} | {steady:.2f} | "
                         f"{steady / local:.2f}× |")
    lines += ["", "End to end counts start-up (a local Ray cluster takes seconds to start); steady is the rate "
              "between the first and the last result written."]
    RESULT.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
