"""``onnxplain evaluate --saliency``: scoring maps saved earlier, by onnxplain explain or any tool."""

import csv
import io
import re

import numpy as np
import onnx_models
import pytest
from PIL import Image

from onnxplain import cli
from onnxplain.api import create_method
from onnxplain.errors import OnnxplainError
from onnxplain.evaluation.saved import read_saved_maps
from onnxplain.model import OnnxModel

QUADRANT = np.zeros((32, 32), bool)
QUADRANT[:16, :16] = True
FAST_SRG = ["--metric", "srg", "--metric-param", "srg:steps=4", "--metric-param", "srg:n_random=2",
            "--metric-param", "srg:substrate=mean"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The quadrant model, an image file, an explain result folder for it and a bare .npy map."""
    folder = tmp_path_factory.mktemp("saved")
    quadrant = onnx_models.quadrant_model(folder / "quadrant.onnx")
    pixels = np.full((32, 32), 25, np.uint8)
    pixels[:16, :16] = 100
    Image.fromarray(pixels).save(folder / "lit.png")
    model = OnnxModel(quadrant, device="cpu")
    attribution = create_method("occlusion", window=8, stride=4).attribute(model, pixels[:, :, None] / 255.0, None)
    attribution.save(folder / "maps" / "occlusion-run")
    np.save(folder / "maps" / "gradcam.npy", QUADRANT.astype(np.float32))
    return folder


def evaluate(runner, saved, out, *saliency, metrics=FAST_SRG):
    arguments = ["evaluate", str(saved / "quadrant.onnx"), str(saved / "lit.png"), "--out", str(out), *metrics]
    for path in saliency:
        arguments += ["--saliency", str(path)]
    return runner.invoke(cli.main, arguments)


def rows(out):
    return {row["method"]: row for row in csv.DictReader(io.StringIO((out / "evaluation.csv").read_text()))}


def test_scores_a_result_folder_and_a_bare_npy(runner, saved, tmp_path):
    result = evaluate(runner, saved, tmp_path, saved / "maps" / "occlusion-run", saved / "maps" / "gradcam.npy")
    assert result.exit_code == 0, result.output
    table = rows(tmp_path)
    assert set(table) == {"occlusion-run", "gradcam"}
    assert float(table["gradcam"]["srg_gap"]) > 0.1 and float(table["occlusion-run"]["srg_gap"]) > 0.1


def test_scores_a_folder_of_results_and_maps(runner, saved, tmp_path):
    result = evaluate(runner, saved, tmp_path, saved / "maps")
    assert result.exit_code == 0, result.output
    assert set(rows(tmp_path)) == {"occlusion-run", "gradcam"}


@pytest.mark.parametrize("name, saliency, message", [
    ("small", np.zeros((8, 8)), r"Error: map 'small' is shaped \(8, 8\) but the image is \(32, 32\)"),
    ("holes", np.where(QUADRANT, np.nan, 0.0), "Error: map 'holes' contains NaN or infinite values"),
    ("words", np.array([["a"] * 32] * 32), "Error: map 'words' holds <U1 values; a map holds real numbers"),
])
def test_a_bad_map_is_refused_in_one_line(runner, saved, tmp_path, name, saliency, message):
    np.save(tmp_path / f"{name}.npy", saliency)
    result = evaluate(runner, saved, tmp_path / "out", saved / "maps" / "gradcam.npy", tmp_path / f"{name}.npy")
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert re.match(message, result.output.strip())
    assert not (tmp_path / "out").exists()  # every map is checked before any is scored


def test_saved_maps_cannot_rerun_the_explanation(runner, saved, tmp_path):
    result = evaluate(runner, saved, tmp_path, saved / "maps", metrics=["--metric", "max-sensitivity"])
    assert result.exit_code == 1 and "max-sensitivity re-run the explanation, so they cannot score saved maps" in (
        result.output)


def test_saved_maps_are_of_one_image_and_run_no_method(runner, saved):
    quadrant = saved / "quadrant.onnx"
    on_dataset = runner.invoke(cli.main, ["evaluate", str(quadrant), "--dataset", str(saved),
                                          "--saliency", str(saved / "maps")])
    assert on_dataset.exit_code == 2 and "give IMAGE, not --dataset" in on_dataset.output
    with_method = runner.invoke(cli.main, ["evaluate", str(quadrant), str(saved / "lit.png"), "--method", "hdm",
                                           "--saliency", str(saved / "maps")])
    assert with_method.exit_code == 2 and "drop --method, -p and --score" in with_method.output


def test_reading_names_maps_by_folder_and_file_and_disambiguates(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / "map.npy", np.zeros((2, 2)))
    maps = read_saved_maps([tmp_path / "a" / "map.npy", tmp_path / "b"])
    assert set(maps) == {str(tmp_path / "a" / "map"), str(tmp_path / "b" / "map")}
    (tmp_path / "empty").mkdir()
    with pytest.raises(OnnxplainError, match="holds neither result folders of onnxplain explain"):
        read_saved_maps([tmp_path / "empty"])
    with pytest.raises(OnnxplainError, match="saved map not found"):
        read_saved_maps([tmp_path / "nowhere"])
