"""The command line: a working run, and one clear line with exit code 1 for each bad input."""

import json
from importlib.metadata import EntryPoint

import numpy as np
import pytest
from PIL import Image

from onnxplain import cli
from onnxplain.perturbation.hdm import Hdm
from onnxplain.registry import GROUPS, plugins


def run(runner, *args):
    return runner.invoke(cli.main, [str(a) for a in args])


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_explain_writes_maps_and_record(runner, brightness, square_png, tmp_path):
    out = tmp_path / "out"
    result = run(runner, "explain", brightness(), square_png, "--out", out, "-p", "offset=4", "-p", "circle_size=5")
    assert result.exit_code == 0, result.output
    assert "hdm with segment-distance: 64 perturbed images" in result.output
    record = json.loads((out / "explanation.json").read_text())
    assert record["method"]["parameters"]["offset"] == 4 and record["image_file"] == str(square_png)
    saliency = np.load(out / "saliency.npy")
    assert saliency.shape == (32, 32) and saliency[8:16, 10:20].mean() > saliency[24:].mean()


def test_explain_rise_with_a_box_target_and_per_pixel_max(runner, brightness, square_png, tmp_path):
    out = tmp_path / "rise"
    result = run(runner, "explain", brightness(), square_png, "--method", "rise", "-p", "n_masks=40",
                 "--target", "box:10,8,20,16", "--per-pixel-max", "--out", out, "--seed", "3")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "explanation.json").read_text())["target"] == {"kind": "box", "box": [10, 8, 20, 16],
                                                                           "class": 0, "output": "0"}
    assert np.load(out / "rise_max.npy").shape == (32, 32)


def test_same_seed_same_files(runner, brightness, square_png, tmp_path):
    model = brightness()
    for name in ("a", "b"):
        run(runner, "explain", model, square_png, "--method", "rise", "-p", "n_masks=30", "--out", tmp_path / name)
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "saliency.npy"), np.load(tmp_path / "b" / "saliency.npy"))


def test_plugins_lists_name_kind_package_version_status(runner):
    result = run(runner, "plugins")
    assert result.exit_code == 0
    header, *rows = result.output.splitlines()
    assert header.split() == ["KIND", "NAME", "PACKAGE", "VERSION", "STATUS"]
    assert any(row.split()[:3] == ["method", "hdm", "onnxplain"] and row.split()[-1] == "ok" for row in rows)


def test_testnet_generate(runner, tmp_path):
    result = run(runner, "testnet", "generate", "--count", "3", "--seed", "4", "--out", tmp_path / "set")
    assert result.exit_code == 0
    assert len(list((tmp_path / "set" / "images").glob("*.png"))) == 3
    assert (tmp_path / "set" / "shapes" / "decider" / "000002.png").is_file()


# --- bad input: one line, exit code 1, no traceback, no output files ----------------------------


def test_missing_model(runner, square_png, tmp_path):
    assert_one_line_error(run(runner, "explain", tmp_path / "none.onnx", square_png), "model file not found")


def test_not_an_onnx_file(runner, square_png):
    assert_one_line_error(run(runner, "explain", square_png, square_png), "is not an ONNX model")


def test_missing_image(runner, brightness, tmp_path):
    assert_one_line_error(run(runner, "explain", brightness(), tmp_path / "none.png"), "image file not found")


def test_not_an_image(runner, brightness, tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello")
    assert_one_line_error(run(runner, "explain", brightness(), path), "is not an image file")


def test_image_that_does_not_fit_the_model(runner, brightness, square_png):
    result = run(runner, "explain", brightness(height=64, width=64), square_png)
    assert_one_line_error(result, "the image is 32x32", "model takes 64x64", "resize")


def test_segment_of_another_shape(runner, brightness, square_png, tmp_path):
    segment = tmp_path / "segment.png"
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(segment)
    result = run(runner, "explain", brightness(), square_png, "--segment", segment)
    assert_one_line_error(result, "segment is shaped (10, 12)")


def test_empty_reference(runner, brightness, tmp_path):
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(black)
    assert_one_line_error(run(runner, "explain", brightness(), black), "is empty, so there is nothing to explain")


def test_nan_outputs(runner, brightness, square_png):
    assert_one_line_error(run(runner, "explain", brightness(head="nan"), square_png), "NaN or infinite")


def test_unknown_method(runner, brightness, square_png):
    assert_one_line_error(run(runner, "explain", brightness(), square_png, "--method", "nosuch"),
                          "unknown method 'nosuch'; installed: ablation,",
                          "hdm, integrated-gradients, kernel-shap, lime, occlusion, rise")


def test_unknown_parameter_lists_the_valid_ones(runner, brightness, square_png):
    result = run(runner, "explain", brightness(), square_png, "-p", "radius=3")
    assert_one_line_error(result, "'hdm' has no parameter 'radius'; its parameters: circle_size, offset")


def test_parameter_of_the_wrong_type(runner, brightness, square_png):
    assert_one_line_error(run(runner, "explain", brightness(), square_png, "-p", "offset=five"),
                          "offset='five' is not a valid int")


def test_bad_target(runner, brightness, square_png):
    assert_one_line_error(run(runner, "explain", brightness(), square_png, "--target", "circle:3"),
                          "cannot read target 'circle:3'")


class Exploding(Hdm):
    name = "exploding"

    def apply(self, image, masks, fill):
        raise ZeroDivisionError("plugin bug")


def use_entry_points(monkeypatch, entry_points):
    """Make the shared plugin registry see `entry_points` for the rest of the test."""
    monkeypatch.setattr(plugins, "_entry_points", entry_points)
    monkeypatch.setattr(plugins, "_found", {})
    monkeypatch.setattr(plugins, "_loaded", {})


@pytest.fixture
def exploding_plugin(monkeypatch):
    entries = [EntryPoint("exploding", "test_cli:Exploding", GROUPS["method"])]
    installed = plugins._entry_points

    def entry_points(group):
        return [e for e in entries if e.group == group] + list(installed(group=group))

    use_entry_points(monkeypatch, entry_points)


def test_a_plugin_that_raises_is_named_and_debug_shows_the_traceback(runner, brightness, square_png, tmp_path,
                                                                   exploding_plugin):
    out = tmp_path / "out"
    result = run(runner, "explain", brightness(), square_png, "--method", "exploding", "-p", "offset=8",
                 "--out", out)
    assert_one_line_error(result, "Exploding.apply ('exploding') failed: ZeroDivisionError: plugin bug")
    assert not out.exists()  # no half-written output
    debug = run(runner, "--debug", "explain", brightness(), square_png, "--method", "exploding", "-p", "offset=8")
    assert debug.exit_code == 1 and isinstance(debug.exception, Exception)
    assert "ZeroDivisionError" in repr(debug.exception.__cause__)


def test_broken_exporter_stays_listed_and_explains_itself(runner, monkeypatch):
    entries = [EntryPoint("tensorflow", "onnxplain_no_such_module:Exporter", GROUPS["exporter"])]
    use_entry_points(monkeypatch, lambda group: [e for e in entries if e.group == group])
    listing = run(runner, "export", "--help")
    assert listing.exit_code == 0 and "tensorflow" in listing.output and "broken" in listing.output
    assert_one_line_error(run(runner, "export", "tensorflow"), "failed to import: ModuleNotFoundError")


# --- methods: several at once, and their bad input ------------------------------------------------


def test_several_methods_in_one_run_write_one_folder_each(runner, brightness, square_png, tmp_path):
    out = tmp_path / "both"
    result = run(runner, "explain", brightness(), square_png, "--method", "occlusion", "--method", "ablation",
                 "-p", "occlusion:window=8", "-p", "ablation:segments=grid", "-p", "ablation:n_segments=4",
                 "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "occlusion" / "explanation.json").read_text())["method"]["parameters"]["window"] == 8
    assert np.load(out / "ablation" / "features.npy").max() == 3


@pytest.mark.parametrize("args, message", [
    (("--method", "occlusion", "-p", "aggregator=nosuch"), "unknown aggregator 'nosuch'; installed: kept-mean"),
    (("--method", "lime", "-p", "n_segments=0"), "n_segments must be at least 1, got 0"),
    (("--method", "occlusion", "-p", "aggregator=shapley"), "aggregator 'shapley' fits one value per feature"),
    (("--per-pixel-max",), "--per-pixel-max is an option of RISE; add --method rise"),
])
def test_bad_method_settings_are_one_line_and_write_nothing(runner, brightness, square_png, tmp_path, args, message):
    out = tmp_path / "out"
    assert_one_line_error(run(runner, "explain", brightness(), square_png, *args, "--out", out), message)
    assert not out.exists()


def test_superpixel_labels_of_the_wrong_shape(runner, brightness, square_png, tmp_path):
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "labels.png")
    result = run(runner, "explain", brightness(), square_png, "--method", "lime", "-p",
                 f"segments={tmp_path / 'labels.png'}", "--out", tmp_path / "out")
    assert_one_line_error(result, r"are shaped (10, 12) but the image is (32, 32)", "(option -p segments=VALUE)")
    assert not (tmp_path / "out").exists()


def test_core_errors_gain_the_flag_that_fixes_them(runner, brightness, square_png):
    result = run(runner, "explain", brightness(layout="NCHW", channels="C"), square_png)
    assert_one_line_error(result, "give the layout (option --layout)")


class NeedsGradients(Hdm):
    name = "needs-gradients"
    needs = frozenset({"predictions", "gradients"})


def test_a_method_the_model_cannot_serve(runner, brightness, square_png, tmp_path, monkeypatch):
    entries = [EntryPoint("needs-gradients", "test_cli:NeedsGradients", GROUPS["method"])]
    installed = plugins._entry_points
    use_entry_points(monkeypatch, lambda group: [e for e in entries if e.group == group] + list(installed(group=group)))
    result = run(runner, "explain", brightness(), square_png, "--method", "needs-gradients", "--out", tmp_path / "o")
    assert_one_line_error(result, "method 'needs-gradients' needs the model's gradients, which OnnxModel cannot give")
    assert not (tmp_path / "o").exists()
