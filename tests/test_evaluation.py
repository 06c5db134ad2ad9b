"""Faithfulness metrics on a model whose correct attribution is known: only the top-left quadrant
decides its output. The correct map must beat a random and an inverted map on every metric."""

import json

import numpy as np
import pytest

from onnxplain import cli, data
from onnxplain.errors import OnnxplainError, PluginError
from onnxplain.evaluation import EvaluationContext, Item, evaluate
from onnxplain.evaluation.faithfulness import Deletion, Infidelity, Insertion, MaxSensitivity
from onnxplain.evaluation.localisation import PointingGame, RelevanceMass
from onnxplain.evaluation.srg import SymmetricRelevanceGain
from onnxplain.method import make_baseline
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


# The quadrant model reads the quadrant's mean, which a blur keeps: these curves remove to black.
def test_deletion_correct_beats_random_and_inverted(context):
    deletion = Deletion(steps=16, substrate="black")
    correct, inverted = (values(deletion, context, m)["deletion_auc"] for m in (CORRECT, INVERTED))
    random = np.mean([values(deletion, context, random_map(s))["deletion_auc"] for s in range(3)])
    assert correct < random < inverted
    baseline = values(deletion, context, CORRECT)
    assert correct < baseline["deletion_random_auc"] - baseline["deletion_random_auc_std"]


def test_insertion_correct_beats_random_and_inverted(context):
    insertion = Insertion(steps=16, substrate="black")
    correct, inverted = (values(insertion, context, m)["insertion_auc"] for m in (CORRECT, INVERTED))
    random = np.mean([values(insertion, context, random_map(s))["insertion_auc"] for s in range(3)])
    assert correct > random > inverted


def test_random_baseline_is_a_mean_over_draws_with_its_spread(context):
    one, eight = (values(Deletion(steps=8, substrate="black", n_random=n), context, CORRECT) for n in (1, 8))
    assert one["deletion_random_auc_std"] == 0.0 and eight["deletion_random_auc_std"] > 0.0
    assert one["deletion_auc"] == eight["deletion_auc"]


def test_faithfulness_metrics_remove_onto_a_blur_by_default():
    for metric in (Deletion(), Insertion(), Infidelity(), SymmetricRelevanceGain()):
        assert metric.parameters()["substrate"] == "blur" and metric.parameters()["blur_fraction"] == 0.05


def test_infidelity_correct_beats_random_and_inverted(context):
    # Noise of 1 image range (0.05 here: the quadrant is 0.35 on 0.3).
    metric = Infidelity(n_samples=64, perturbation="gaussian", noise_std=1.0)
    correct, inverted, random = (values(metric, context, m)["infidelity"] for m in (CORRECT, INVERTED, random_map(0)))
    assert correct < 0.1 * random and correct < 0.1 * inverted


def test_infidelity_square_removal_correct_beats_random_and_inverted(context):
    metric = Infidelity(n_samples=64, substrate="black", square_size=0.25)
    correct, inverted, random = (values(metric, context, m)["infidelity"] for m in (CORRECT, INVERTED, random_map(0)))
    assert correct < 0.1 * random and correct < 0.1 * inverted


def test_infidelity_perturbations_move_the_testnet_score():
    model = OnnxModel(data.testnet_model_path(), device="cpu", batch_size=16)
    baseline = make_baseline(model, data.load_sample(1).image[:, :, None])
    context = EvaluationContext(model=model, image=baseline.image, reference=baseline.reference, batch_size=16)
    saliency = np.zeros((240, 240))
    original = context.similarity(baseline.image[None])[0]
    # The former default, noise of 0.1 on every pixel, wipes the score out on every draw: the change is
    # the whole score each time, and no map can explain it.
    collapsed = values(Infidelity(n_samples=8, perturbation="gaussian", noise_std=0.1), context, saliency)
    assert collapsed["infidelity_score_change"] > 0.99 * original
    moved = values(Infidelity(), context, saliency)["infidelity_score_change"]
    assert 0.02 < moved < 0.5 * original


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


def test_pointing_game_reaches_a_euclidean_15_pixels(context):
    corner = np.zeros((32, 32), bool)
    corner[0, 0] = True
    game = PointingGame()
    at = {"corner": corner}

    def hit(row, column):
        saliency = np.zeros((32, 32))
        saliency[row, column] = 1.0
        return values(game, EvaluationContext(**{**context.__dict__, "masks": at}), saliency)["pointing_game[corner]"]

    # (10, 11): 14.87 px away, 21 along the axes, which the former 15-step diamond missed.
    assert hit(10, 11) == 1.0 and hit(0, 15) == 1.0
    assert hit(11, 11) == 0.0 and hit(0, 16) == 0.0  # 15.56 and 16 px away


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
    for metric in (Deletion(steps=8), Insertion(steps=8, substrate="road"), Infidelity(n_samples=8),
                   SymmetricRelevanceGain(steps=8, n_random=2)):
        assert values(metric, context, random_map(5)) == values(metric, context, random_map(5))


def test_metrics_are_plugins():
    assert {"deletion", "insertion", "infidelity", "max-sensitivity", "pointing-game", "relevance-mass", "srg",
            "model-randomisation"} <= set(plugins.names("metric"))


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
                     metrics=[Deletion(steps=8, substrate="black"), RelevanceMass(),
                              SymmetricRelevanceGain(steps=8, substrate="mean", n_random=4)])
    (row,) = table.rows
    assert row["method"] == "hdm" and row["deletion_auc"] < row["deletion_random_auc"]
    assert row["relevance_density[quadrant]"] > 2
    assert row["srg_gap"] > 0 and row["srg_beats_random"] == 1.0
    assert {curve for _, metric, curve in table.curves if metric == "srg"} == {
        "MoRF", "LeRF", "random maps MoRF (mean of 4)", "random maps LeRF (mean of 4)"}
    names = {p.name for p in table.save(tmp_path / "eval")}
    assert names == {"evaluation.csv", "evaluation.json", "curves.png"}
    saved = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert saved["means"]["hdm"]["deletion_auc"] == row["deletion_auc"]


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
                                      "--metric-param", "insertion:steps=8", "--metric-param", "srg:steps=8",
                                      "--metric-param", "srg:n_random=2", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "out" / "evaluation.csv").read_text().splitlines()
    assert len(rows) == 3 and "pointing_game[quadrant]" in rows[0] and "infidelity" in rows[0]
    assert "srg_gap" in rows[0] and "srg gap" in result.output and "against random maps'" in result.output


def test_evaluate_command_needs_one_input(runner, quadrant):
    result = runner.invoke(cli.main, ["evaluate", str(quadrant)])
    assert result.exit_code == 2 and "give either IMAGE or --dataset" in result.output


def test_infidelity_does_not_depend_on_the_batch_size(testnet_model):
    from onnxplain import OnnxModel, data
    from onnxplain.evaluation.faithfulness import Infidelity
    from onnxplain.evaluation.metric import EvaluationContext
    from onnxplain.targets import Reference

    model = OnnxModel(testnet_model)
    image = data.load_sample(0).image[..., None]
    reference = Reference(model.predict(image[None]).mask[0])
    saliency = np.random.default_rng(0).random(image.shape[:2])
    values = [Infidelity(n_samples=8).evaluate(EvaluationContext(model=model, image=image, reference=reference,
                                                                  batch_size=size), saliency).values
              for size in (3, 8)]
    assert values[0] == values[1]
