"""Fewer forward passes: adaptive RISE and coarse-to-fine HDM and occlusion, against the full runs.

RISE with ``converge=C`` stops at the first checkpoint (every 100 masks, from 200) where its
split-half estimate predicts correlation C with the map it is judged against
(`onnxplain.perturbation.convergence`): the map of the whole budget (``converge_to='budget'``, the
default) or of infinitely many masks (``'limit'``). An adaptive run is the whole run cut short (the
same masks and values, tests/test_convergence.py), so one run of the whole budget per image gives
every stopping point: its masks are replayed through the same `SplitHalf` check, in the same blocks
of 100, and the map of the masks up to each checkpoint is compared with the whole budget's. Budgets:
4000 masks, and the first 2000 of them (the map of a 2000-mask budget, same seed).

HDM and occlusion with ``refine=T`` evaluate a coarse grid, then only next to positions that
changed (`onnxplain.perturbation.refine`). The positions depend on the values only, and each
position's value is the whole grid's (tests/test_coarse_to_fine.py), so the whole grid's values are
replayed through the same `CoarseToFine` plan and the evaluated positions aggregated; on testnet
sample 0 and the person model a real refined run is also made and must evaluate the same positions.

Images: testnet's bundled samples 0-9 and the real models of `real_models.py` on their test images.
Figures: forward passes used (share of the full run's) and Pearson correlation with the full map.

Run:  python benchmarks/adaptive_sampling.py   (about 20 minutes on 2 cores)
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
from onnxplain.perturbation.convergence import CHECK_EVERY, SplitHalf  # noqa: E402
from onnxplain.perturbation.engine import reaggregate  # noqa: E402
from onnxplain.perturbation.refine import CoarseToFine, SubsetMasks  # noqa: E402

BUDGETS = (2000, 4000)
TARGETS = (0.95, 0.97)
REFINE = ((2, 0.05), (3, 0.05))  # (refine_step, refine)
CHECKED = ("testnet 0", "person (astronaut)")  # cases where a real refined run checks the replay


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
        trackers = {against: SplitHalf(method.aggregator, budget_source, whole.baseline_value, 1.0, against=against)
                    for against in ("budget", "limit")}
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
        for against, tracker in trackers.items():
            found[budget, against] = [(done, expected, pearson(maps[done], maps[budget]))
                                      for done, _, expected in tracker.checks]
    return found


def stop_at(checks: list, target: float, budget: int) -> tuple[int, float, float]:
    """Where an adaptive run stops: (masks, predicted, measured); the whole budget when no check passes."""
    for done, expected, measured in checks:
        if expected >= target:
            return done, expected, measured
    return budget, 1.0, 1.0


def refine_replay(method_name: str, model: OnnxModel, image: np.ndarray, check: bool) -> dict:
    """Per (step, tolerance): positions evaluated, positions of the grid, Pearson with the whole grid's map."""
    method = onnxplain.create_method(method_name)
    whole = method.attribute(model, image)
    source = method.source_for(whole.image)
    found = {}
    for step, tolerance in REFINE:
        plan = CoarseToFine(source.grid, tolerance=tolerance, step=step)
        order, chosen = [], plan.first()
        while len(chosen):
            order.append(chosen)
            chosen = plan.next(chosen, whole.values[chosen] - whole.baseline_value)
        evaluated = np.concatenate(order)
        saliency = reaggregate(SubsetMasks(source, evaluated), method.aggregator, whole.values[evaluated],
                               baseline_value=whole.baseline_value)
        found[step, tolerance] = (len(evaluated), len(source), pearson(saliency, whole.map))
        if check:
            real = onnxplain.create_method(method_name, refine=tolerance, refine_step=step).attribute(model, image)
            if not (np.array_equal(real.arrays["evaluated"], evaluated) and pearson(real.map, saliency) > 0.9999):
                raise SystemExit(f"{method_name} refine={tolerance} step {step}: the real run differs from the replay")
    return found


def rise_table(results: dict) -> list[str]:
    lines = ["### RISE, `converge=C` (judged against the budget's map, the default)", "",
             "| image | budget | " + " | ".join(f"C={t}: masks (share) | predicted | Pearson" for t in TARGETS)
             + " | `converge_to=limit`, C=0.95: masks (share) | Pearson |",
             "|---|---|" + "---|---|---|" * len(TARGETS) + "---|---|"]
    for label, replay in results.items():
        for budget in BUDGETS:
            cells = []
            for target in TARGETS:
                done, expected, measured = stop_at(replay[budget, "budget"], target, budget)
                cells.append(f"{done} ({done / budget:.0%}) | {expected:.3f} | {measured:.3f}")
            done, _, measured = stop_at(replay[budget, "limit"], 0.95, budget)
            cells.append(f"{done} ({done / budget:.0%}) | {measured:.3f}")
            lines.append(f"| {label} | {budget} | " + " | ".join(cells) + " |")
    lines.append("")
    for budget in BUDGETS:
        for target in TARGETS:
            stops = [stop_at(r[budget, "budget"], target, budget) for k, r in results.items()
                     if k.startswith("testnet")]
            if stops:
                share = np.mean([done for done, *_ in stops]) / budget
                measured = [m for *_, m in stops]
                lines.append(f"Testnet, budget {budget}, C={target}: mean share {share:.0%}, Pearson mean "
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
    head = " | ".join(f"S={step}, T={tolerance}: evaluated (share) | Pearson" for step, tolerance in REFINE)
    lines = [f"### {method_name}, `refine=T` (`refine_step=S`)", "", f"| image | positions | {head} |",
             "|---|---|" + "---|---|" * len(REFINE)]
    for label, found in results.items():
        total = next(iter(found.values()))[1]
        cells = " | ".join(f"{found[k][0]} ({found[k][0] / total:.0%}) | {found[k][2]:.3f}" for k in REFINE)
        lines.append(f"| {label} | {total} | {cells} |")
    for key in REFINE:
        testnet = [found[key] for label, found in results.items() if label.startswith("testnet")]
        if not testnet:
            continue
        lines.append(f"\nTestnet, S={key[0]}, T={key[1]}: mean share {np.mean([u / n for u, n, _ in testnet]):.0%}, "
                     f"Pearson mean {np.mean([p for *_, p in testnet]):.3f}, lowest {min(p for *_, p in testnet):.3f}.")
    return lines


def main(only: list[str]) -> None:
    rise, refined = {}, {"hdm": {}, "occlusion": {}}
    for label, model, image in cases():
        if only and not any(label.startswith(prefix) for prefix in only):
            continue
        started = time.perf_counter()
        for method_name in refined:
            refined[method_name][label] = refine_replay(method_name, model, image, check=label in CHECKED)
        rise[label] = rise_replay(model, image)
        print(label, {m: found[label] for m, found in refined.items()},
              {t: stop_at(rise[label][max(BUDGETS), "budget"], t, max(BUDGETS)) for t in TARGETS},
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    lines = rise_table(rise) + [""] + refine_table("HDM", refined["hdm"]) + [""]
    lines += refine_table("Occlusion", refined["occlusion"])
    print("\n".join(lines))
    if not only:
        out = Path(__file__).resolve().parent / "results" / "adaptive_sampling.md"
        out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
