"""Faithfulness metrics on a model whose correct attribution is known: only the top-left quadrant
decides its output. The correct map must beat a random and an inverted map on every metric."""

import json

import numpy as np
import pytest

from onnxplain import cli
from onnxplain.errors import OnnxplainError, PluginError
from onnxplain.evaluation import EvaluationContext, Item, evaluate
from onnxplain.evaluation.faithfulness import Deletion, Infidelity, Insertion, MaxSensitivity
from onnxplain.evaluation.localisation import PointingGame, RelevanceMass
from onnxplain.model import OnnxModel
from onnxplain.perturbation.hdm import Hdm
from onnxplain.registry import plugins
from onnxplain.targets import make_reference

QUADRANT = np.zeros((32, 32), bool)
QUADRANT[:16, :16] = True
CORRECT = QUADRANT.astype(float)
INVERTED = 1.0 - CORRECT


def random_map(seed):
    return np.random.default_rng(seed).random((32, 32))


@pytest.fixture
def context(quadrant):
    model = OnnxModel(quadrant, device="cpu", batch_size=32)
    image = np.full((32, 32, 1), 0.3, np.float32)
    image[:16, :16] = 0.35  # just above the quadrant's threshold (0.25): the output is positive but not saturated
    prediction = model.predict(image[None]).mask[0]
    return EvaluationContext(model=model, image=image, reference=make_reference(prediction), seed=0,
                             masks={"quadrant": QUADRANT}, batch_size=32)


def values(metric, context, saliency):
    return metric.evaluate(context, saliency).values


def test_deletion_correct_beats_random_and_inverted(context):
    correct, inverted = (values(Deletion(steps=16), context, m)["deletion_auc"] for m in (CORRECT, INVERTED))
    random = np.mean([values(Deletion(steps=16), context, random_map(s))["deletion_auc"] for s in range(3)])
    assert correct < random < inverted
    assert correct < values(Deletion(steps=16), context, CORRECT)["deletion_random_auc"]


def test_insertion_correct_beats_random_and_inverted(context):
    correct, inverted = (values(Insertion(steps=16), context, m)["insertion_auc"] for m in (CORRECT, INVERTED))
    random = np.mean([values(Insertion(steps=16), context, random_map(s))["insertion_auc"] for s in range(3)])
    assert correct > random > inverted


def test_infidelity_correct_beats_random_and_inverted(context):
    metric = Infidelity(n_samples=64, noise_std=0.05)
    correct, inverted, random = (values(metric, context, m)["infidelity"] for m in (CORRECT, INVERTED, random_map(0)))
    assert correct < 0.1 * random and correct < 0.1 * inverted


def test_max_sensitivity_correct_is_stable_and_random_is_not(context):
    correct = EvaluationContext(**{**context.__dict__, "explain": lambda image: CORRECT})
    draws = iter(range(100))
    unstable = EvaluationContext(**{**context.__dict__, "explain": lambda image: random_map(next(draws))})
    inverted = EvaluationContext(**{**context.__dict__, "explain": lambda image: INVERTED})
    metric = MaxSensitivity(n_samples=3)
    assert values(metric, correct, CORRECT)["max_sensitivity"] == 0.0
    assert values(metric, unstable, random_map(99))["max_sensitivity"] > 0.5
    # Sensitivity measures stability, which an inverted but constant map shares: no better, no worse.
    assert values(metric, inverted, INVERTED)["max_sensitivity"] == 0.0


def test_pointing_game_correct_beats_random_and_inverted(context):
    game = PointingGame(tolerance=0)
    assert values(game, context, CORRECT)["pointing_game[quadrant]"] == 1.0
    assert values(game, context, INVERTED)["pointing_game[quadrant]"] == 0.0
    hits = [values(game, context, random_map(s))["pointing_game[quadrant]"] for s in range(20)]
    assert np.mean(hits) < 0.6


def test_relevance_mass_correct_beats_random_and_inverted(context):
    mass = RelevanceMass()
    correct, inverted, random = (values(mass, context, m) for m in (CORRECT, INVERTED, random_map(1)))
    assert correct["relevance_mass[quadrant]"] == 1.0 and correct["relevance_density[quadrant]"] == 4.0
    assert inverted["relevance_mass[quadrant]"] == 0.0
    assert 0.15 < random["relevance_mass[quadrant]"] < 0.35


def test_same_seed_same_numbers(context):
    for metric in (Deletion(steps=8), Insertion(steps=8), Infidelity(n_samples=8)):
        assert values(metric, context, random_map(5)) == values(metric, context, random_map(5))


def test_metrics_are_plugins():
    assert {"deletion", "insertion", "infidelity", "max-sensitivity", "pointing-game", "relevance-mass"} <= set(
        plugins.names("metric"))


# --- bad input ----------------------------------------------------------------------------------


def test_map_of_the_wrong_shape(context):
    with pytest.raises(OnnxplainError, match=r"saliency map is shaped \(8, 8\) but the image is \(32, 32\)"):
        Deletion().evaluate(context, np.zeros((8, 8)))


def test_empty_region(context):
    empty = EvaluationContext(**{**context.__dict__, "masks": {"nothing": np.zeros((32, 32), bool)}})
    with pytest.raises(OnnxplainError, match="mask 'nothing' is empty"):
        RelevanceMass().evaluate(empty, CORRECT)


def test_region_metrics_need_a_region(context):
    none = EvaluationContext(**{**context.__dict__, "masks": {}})
    with pytest.raises(OnnxplainError, match="needs a region to check against"):
        PointingGame().evaluate(none, CORRECT)


def test_unknown_metric():
    with pytest.raises(PluginError, match="unknown metric 'accuracy'; installed: deletion"):
        plugins.get("metric", "accuracy")


# --- the evaluate runner and command ----------------------------------------------------------------


def test_runner_tabulates_every_method_and_metric(quadrant, tmp_path):
    model = OnnxModel(quadrant, device="cpu", batch_size=32)
    image = np.full((32, 32, 1), 0.3, np.float32)
    image[:16, :16] = 0.35
    table = evaluate(model, [Item("lit", image, masks={"quadrant": QUADRANT})],
                     methods=[Hdm(circle_size=9, offset=4, score="class-score")],
                     metrics=[Deletion(steps=8), RelevanceMass()])
    (row,) = table.rows
    assert row["method"] == "hdm" and row["deletion_auc"] < row["deletion_random_auc"]
    assert row["relevance_density[quadrant]"] > 2
    names = {p.name for p in table.save(tmp_path)}
    assert names == {"evaluation.csv", "evaluation.json", "curves.png"}
    assert json.loads((tmp_path / "evaluation.json").read_text())["means"]["hdm"]["deletion_auc"] == row["deletion_auc"]


def test_evaluate_command_on_a_dataset(runner, quadrant, tmp_path):
    from PIL import Image

    for folder in ("images", "shapes/quadrant"):
        (tmp_path / "set" / folder).mkdir(parents=True)
    for name, level in (("a.png", 90), ("b.png", 100)):
        pixels = np.full((32, 32), 75, np.uint8)
        pixels[:16, :16] = level
        Image.fromarray(pixels).save(tmp_path / "set" / "images" / name)
        Image.fromarray(QUADRANT.astype(np.uint8) * 255).save(tmp_path / "set" / "shapes" / "quadrant" / name)
    result = runner.invoke(cli.main, ["evaluate", str(quadrant), "--dataset", str(tmp_path / "set"),
                                      "--method", "hdm", "-p", "hdm:offset=4", "-p", "hdm:circle_size=9",
                                      "--score", "class-score", "--metric-param", "deletion:steps=8",
                                      "--metric-param", "insertion:steps=8", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "out" / "evaluation.csv").read_text().splitlines()
    assert len(rows) == 3 and "pointing_game[quadrant]" in rows[0] and "infidelity" in rows[0]


def test_evaluate_command_needs_one_input(runner, quadrant):
    result = runner.invoke(cli.main, ["evaluate", str(quadrant)])
    assert result.exit_code == 2 and "give either IMAGE or --dataset" in result.output
