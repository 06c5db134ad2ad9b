"""Fewer forward passes: adaptive RISE and coarse-to-fine HDM and occlusion, against the full runs.

RISE with ``converge=C`` stops at the first checkpoint (every 100 masks, from 200) where its
estimate from its four interleaved parts predicts correlation C with the map it is judged against
(`onnxplain.perturbation.convergence`): the map of the whole budget (``converge_to='budget'``, the
default) or of infinitely many masks (``'limit'``). An adaptive run is the whole run cut short (the
same masks and values, tests/test_convergence.py), so one run of the whole budget per image gives
every stopping point: its masks are replayed through the same `SplitReliability` check, in the same blocks
of 100, and the map of the masks up to each checkpoint is compared with the whole budget's. Budgets:
4000 masks, and the first 2000 of them (the map of a 2000-mask budget, same seed).

HDM and occlusion with ``refine=T`` evaluate a coarse grid and one probe per block of positions,
then only next to positions that changed, and inside blocks whose probe changed
(`onnxplain.perturbation.refine`). The probes are images no whole-grid run makes, so each setting is
a real refined run; its forward passes (positions and probes) are counted against the whole grid's
positions, and its wall time against the whole grid's.

Images: testnet's bundled samples 0-9 and the real models of `real_models.py` on their test images.
Figures: forward passes used (share of the full run's) and Pearson correlation with the full map.

Run:  python benchmarks/adaptive_sampling.py   (about 12 minutes on 2 cores)
Writes benchmarks/results/adaptive_sampling.md; with image labels' beginnings as arguments
(``"testnet 0" person``), runs those only and writes nothing.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_models  # noqa: E402

import onnxplain  # noqa: E402
from onnxplain import data  # noqa: E402
from onnxplain.model import OnnxModel  # noqa: E402
from onnxplain.perturbation.convergence import CHECK_EVERY, PARTS, SplitReliability  # noqa: E402

BUDGETS = (2000, 4000)
TARGETS = (0.95, 0.97)
REFINE = ((4, 0.05), (3, 0.05), (3, 0.1))  # (refine_step, refine)


def cases() -> list[tuple[str, OnnxModel, np.ndarray]]:
    testnet = OnnxModel(data.testnet_model_path())
    found = [(f"testnet {i}", testnet, data.load_sample(i).image) for i in range(10)]
    for name, image in (("text", "lines"), ("person", "astronaut")):
        spec = real_models.MODELS[name]
        model = OnnxModel(real_models.fetch(name, check_parity=False), **spec.onnxplain_options())
        found.append((f"{name} ({image})", model, real_models.image(image)))
    return found


def pearson(first: np.ndarray, second: np.ndarray) -> float:
    """Pearson correlation; 1 for identical maps, which a constant map (no circle moved the score) can be."""
    if np.array_equal(first, second):
        return 1.0
    return float(np.corrcoef(first.ravel(), second.ravel())[0, 1])


def rise_replay(model: OnnxModel, image: np.ndarray) -> dict:
    """Per budget and rule: each checkpoint's (masks, predicted, measured correlation with the budget's map)."""
    method = onnxplain.create_method("rise", n_masks=max(BUDGETS))
    whole = method.attribute(model, image)
    source = method.source_for(whole.image)
    found = {}
    for budget in BUDGETS:
        budget_source = onnxplain.create_method("rise", n_masks=budget).source_for(whole.image)
        trackers = {rule: SplitReliability(method.aggregator, budget_source, whole.baseline_value, 1.0,
                                           against=against, parts=parts)
                    for rule, against, parts in (("budget", "budget", PARTS), ("limit", "limit", PARTS),
                                                 ("halves", "budget", 2))}
        running = copy.copy(method.aggregator)
        running.begin(budget_source, whole.baseline_value)
        maps = {}
        for start in range(0, budget, CHECK_EVERY):
            stop = start + CHECK_EVERY
            batch, values = source.batch(start, stop), whole.values[start:stop]
            running.add(batch, values)
            for tracker in trackers.values():
                tracker.add(batch, values)
                tracker.converged(stop)
            maps[stop] = running.finish()
        for rule, tracker in trackers.items():
            found[budget, rule] = [(done, expected, pearson(maps[done], maps[budget]))
                                      for done, _, expected in tracker.checks]
    return found


def stop_at(checks: list, target: float, budget: int) -> tuple[int, float, float]:
    """Where an adaptive run stops: (masks, predicted, measured); the whole budget when no check passes."""
    for done, expected, measured in checks:
        if expected >= target:
            return done, expected, measured
    return budget, 1.0, 1.0


def refine_runs(method_name: str, model: OnnxModel, image: np.ndarray) -> dict:
    """Per (step, tolerance): forward passes, the whole grid's positions, Pearson with its map, time ratio."""
    started = time.perf_counter()
    whole = onnxplain.create_method(method_name).attribute(model, image)
    whole_seconds = time.perf_counter() - started
    found = {}
    for step, tolerance in REFINE:
        started = time.perf_counter()
        refined = onnxplain.create_method(method_name, refine=tolerance, refine_step=step).attribute(model, image)
        seconds = time.perf_counter() - started
        found[step, tolerance] = (refined.record["convergence"]["passes"], len(whole.values),
                                  pearson(refined.map, whole.map), seconds / whole_seconds)
    return found


def rise_table(results: dict) -> list[str]:
    lines = ["### RISE, `converge=C` (judged against the budget's map, the default)", "",
             "| image | budget | " + " | ".join(f"C={t}: masks (share) | predicted | Pearson" for t in TARGETS)
             + " | `converge_to=limit`, C=0.95: masks (share) | Pearson "
             + "| two halves instead of four parts, C=0.97: masks (share) | Pearson |",
             "|---|---|" + "---|---|---|" * len(TARGETS) + "---|---|---|---|"]
    for label, replay in results.items():
        for budget in BUDGETS:
            cells = []
            for target in TARGETS:
                done, expected, measured = stop_at(replay[budget, "budget"], target, budget)
                cells.append(f"{done} ({done / budget:.0%}) | {expected:.3f} | {measured:.3f}")
            for rule, target in (("limit", 0.95), ("halves", 0.97)):
                done, _, measured = stop_at(replay[budget, rule], target, budget)
                cells.append(f"{done} ({done / budget:.0%}) | {measured:.3f}")
            lines.append(f"| {label} | {budget} | " + " | ".join(cells) + " |")
    lines.append("")
    for budget in BUDGETS:
        for rule, target in [("budget", t) for t in TARGETS] + [("halves", 0.97)]:
            stops = [stop_at(r[budget, rule], target, budget) for k, r in results.items()
                     if k.startswith("testnet")]
            if stops:
                share = np.mean([done for done, *_ in stops]) / budget
                measured = [m for *_, m in stops]
                how = "" if rule == "budget" else ", two halves"
                lines.append(f"Testnet, budget {budget}, C={target}{how}: mean share {share:.0%}, Pearson mean "
                             f"{np.mean(measured):.3f}, lowest {min(measured):.3f}.")
    # The prediction against measurement, at every checkpoint of every image and budget.
    errors = np.array([measured - expected for replay in results.values() for budget in BUDGETS
                       for _, expected, measured in replay[budget, "budget"][:-1]])
    lines += ["", f"Predicted against measured correlation with the budget's map, every checkpoint before the "
              f"budget's end ({len(errors)}): measured minus predicted, mean {errors.mean():+.3f}, "
              f"5th percentile {np.percentile(errors, 5):+.3f}, lowest {errors.min():+.3f}, highest "
              f"{errors.max():+.3f}."]
    return lines


def refine_table(method_name: str, results: dict) -> list[str]:
    head = " | ".join(f"S={step}, T={tolerance}: passes (share) | Pearson | time" for step, tolerance in REFINE)
    lines = [f"### {method_name}, `refine=T` (`refine_step=S`)", "", f"| image | positions | {head} |",
             "|---|---|" + "---|---|---|" * len(REFINE)]
    for label, found in results.items():
        total = next(iter(found.values()))[1]
        cells = " | ".join(f"{found[k][0]} ({found[k][0] / total:.0%}) | {found[k][2]:.3f} | {found[k][3]:.2f}×"
                           for k in REFINE)
        lines.append(f"| {label} | {total} | {cells} |")
    for key in REFINE:
        testnet = [found[key] for label, found in results.items() if label.startswith("testnet")]
        if not testnet:
            continue
        shares = [passes / total for passes, total, *_ in testnet]
        pearsons = [p for _, _, p, _ in testnet]
        lines.append(f"\nTestnet, S={key[0]}, T={key[1]}: mean share {np.mean(shares):.0%}, highest "
                     f"{max(shares):.0%}; Pearson mean {np.mean(pearsons):.3f}, lowest {min(pearsons):.3f}.")
    return lines


def main(only: list[str]) -> None:
    rise, refined = {}, {"hdm": {}, "occlusion": {}}
    for label, model, image in cases():
        if only and not any(label.startswith(prefix) for prefix in only):
            continue
        started = time.perf_counter()
        for method_name in refined:
            refined[method_name][label] = refine_runs(method_name, model, image)
        rise[label] = rise_replay(model, image)
        print(label, {m: found[label] for m, found in refined.items()},
              {t: stop_at(rise[label][max(BUDGETS), "budget"], t, max(BUDGETS)) for t in TARGETS},
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    lines = ["# Fewer forward passes: adaptive RISE, coarse-to-fine HDM and occlusion", "",
             "Per image: forward passes against the full run's, and Pearson with the full map (same seed); time: "
             "wall time against the full run's. Made by `python benchmarks/adaptive_sampling.py`.", ""]
    lines += rise_table(rise) + [""] + refine_table("HDM", refined["hdm"]) + [""]
    lines += refine_table("Occlusion", refined["occlusion"])
    print("\n".join(lines))
    if not only:
        out = Path(__file__).resolve().parent / "results" / "adaptive_sampling.md"
        out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
