"""The example plugin package, installed, used through the onnxplain command as a user would."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from onnxplain_extras.scores import Hd95Score, IouScore

from onnxplain import data
from onnxplain.outputs import ModelOutput
from onnxplain.scores import HausdorffScore, dice_coefficient
from onnxplain.targets import Reference


def onnxplain(*args):
    command = Path(sys.executable).with_name("onnxplain")
    prefix = [str(command)] if command.exists() else [sys.executable, "-m", "onnxplain"]
    return subprocess.run([*prefix, *map(str, args)], capture_output=True, text=True, timeout=600)


def test_the_plugins_are_listed_with_their_package():
    listing = onnxplain("plugins")
    assert listing.returncode == 0, listing.stderr
    rows = [line.split() for line in listing.stdout.splitlines()]
    for kind, name in (("method", "blur"), ("score", "iou"), ("score", "hd95")):
        assert [kind, name, "onnxplain-extras", "0.2.0", "ok"] in rows


def test_explain_with_the_plugins_through_the_command(tmp_path):
    sample = data.load_sample(2)
    image = data.samples_dir() / "images" / data.sample_names()[2]
    result = onnxplain("explain", data.testnet_model_path(), image, "--method", "blur", "-p", "window=32",
                       "-p", "stride=16", "--score", "iou", "--out", tmp_path, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "explanation.json").read_text())
    assert (record["method"]["name"], record["score"]["name"]) == ("blur", "iou")
    parameters = record["method"]["parameters"]
    assert (parameters["window"], parameters["stride"], parameters["blur_sigma"]) == (32, 16, 6.0)
    assert parameters["score"]["name"] == "iou" and record["aggregator"]["name"] == "occluded-mean"
    saliency = np.load(tmp_path / "saliency.npy")
    shapes = sample.shapes
    background = ~(shapes["target"] | shapes["decider"] | shapes["distractor"])
    assert saliency[shapes["decider"]].mean() > 3 * saliency[background].mean()


def test_unknown_parameter_of_a_plugin_is_one_line():
    image = data.samples_dir() / "images" / data.sample_names()[0]
    result = onnxplain("explain", data.testnet_model_path(), image, "--method", "blur", "-p", "size=3")
    assert result.returncode == 1
    assert result.stderr.strip() == ("Error: 'blur' has no parameter 'size'; its parameters: window, stride, "
                                     "blur_sigma, score, aggregator, seed")


def outputs(masks):
    return ModelOutput(probability=masks.astype(np.float32), mask=masks)


def test_iou_is_dice_over_two_minus_dice():
    rng = np.random.default_rng(0)
    reference = rng.random((20, 20)) < 0.3
    masks = rng.random((5, 20, 20)) < 0.3
    dice = dice_coefficient(masks, reference)
    np.testing.assert_allclose(1 - IouScore().calculate_distance(outputs(masks), Reference(reference)),
                               dice / (2 - dice))


def test_hd95_is_at_most_the_hausdorff_distance():
    reference = np.zeros((40, 40), bool)
    reference[10:25, 8:30] = True
    masks = np.stack([np.roll(reference, shift, axis=1) for shift in (0, 2, 5)])
    masks[2, 38, 38] = True  # one far outlier pixel
    hd95 = Hd95Score().calculate_distance(outputs(masks), Reference(reference))
    hausdorff = HausdorffScore().calculate_distance(outputs(masks), Reference(reference))
    assert hd95[0] == 0 and (hd95 <= hausdorff).all() and hd95[2] < hausdorff[2] / 2
