"""The bad-input catalogue: each case one clear line, exit code 1, and nothing written or lost.

Every case here was found by trying onnxplain as a user would; `test_cli.py` holds the first ones.
"""

import errno
import json
import subprocess
import sys
from importlib.metadata import EntryPoint

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image
from test_cli import assert_one_line_error, run, use_entry_points

from onnxplain import batching, io
from onnxplain.registry import GROUPS, plugins
from onnxplain.scores import DiceScore


def assert_error_after_progress(result, *fragments):
    """One error line after the progress bar (which a failure during the work leaves on stderr)."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and lines[-1].startswith("Error: "), result.output
    assert "Traceback" not in result.output and all(line.endswith("images)") for line in lines[:-1]), result.output
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def leftovers(folder):
    """Hidden staging folders that a failed run left beside its output."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".") and "partial" in p.name]


# --- inputs that are not what they claim -------------------------------------------------------


def test_a_16_bit_png_keeps_its_levels_when_read_as_rgb(tmp_path):
    levels = np.array([[0, 1000], [30000, 65535]], np.uint16)
    Image.fromarray(levels).save(tmp_path / "deep.png")
    rgb = io.read_image(tmp_path / "deep.png", channels=3)
    assert rgb.shape == (2, 2, 3)
    np.testing.assert_allclose(rgb[..., 1], levels / 65535, atol=1e-6)  # Pillow's own conversion gives 0 or 1


def test_a_folder_given_as_the_image(runner, brightness, tmp_path):
    assert_one_line_error(run(runner, "explain", brightness(), tmp_path), "is a folder, not an image file")


def test_a_truncated_png(runner, brightness, square_png, tmp_path):
    cut = tmp_path / "cut.png"
    cut.write_bytes(square_png.read_bytes()[:60])
    assert_one_line_error(run(runner, "explain", brightness(), cut), "is not an image file that Pillow can read")


def test_an_empty_file_as_the_model(runner, square_png, tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    assert_one_line_error(run(runner, "explain", tmp_path / "empty.onnx", square_png), "is not an ONNX model")


def test_a_truncated_onnx_model(runner, brightness, square_png, tmp_path):
    whole = brightness().read_bytes()
    (tmp_path / "cut.onnx").write_bytes(whole[: len(whole) // 2])
    assert_one_line_error(run(runner, "explain", tmp_path / "cut.onnx", square_png), "cut.onnx")


def test_a_missing_segment_file(runner, brightness, square_png, tmp_path):
    result = run(runner, "explain", brightness(), square_png, "--segment", tmp_path / "none.png")
    assert_one_line_error(result, "mask file not found")


def test_a_missing_mask_target_file(runner, brightness, square_png, tmp_path):
    result = run(runner, "explain", brightness(), square_png, "--target", f"mask:{tmp_path / 'none.png'}")
    assert_one_line_error(result, "not found")


# --- models that onnxplain cannot explain, and settings that do not fit them ----------------------


def _save_model(path, inputs, outputs, nodes):
    graph = helper.make_graph(nodes, "m", inputs, outputs)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def test_a_model_with_two_inputs(runner, square_png, tmp_path):
    path = _save_model(tmp_path / "two.onnx",
                       [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 1, "H", "W"]) for n in "ab"],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, "H", "W"])],
                       [helper.make_node("Add", ["a", "b"], ["y"])])
    assert_one_line_error(run(runner, "explain", path, square_png), "takes 2 inputs (a, b)")


def test_a_model_with_an_integer_input(runner, square_png, tmp_path):
    path = _save_model(tmp_path / "int.onnx", [helper.make_tensor_value_info("x", TensorProto.INT64, ["N", 1, 8, 8])],
                       [helper.make_tensor_value_info("y", TensorProto.INT64, ["N", 1, 8, 8])],
                       [helper.make_node("Identity", ["x"], ["y"])])
    assert_one_line_error(run(runner, "explain", path, square_png), "onnxplain feeds float32, float16")


def test_a_classifier_output(runner, square_png, tmp_path):
    path = _save_model(tmp_path / "cls.onnx", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 32, 32])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
                       [helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=0)])
    assert_one_line_error(run(runner, "explain", path, square_png), "onnxplain explains segmentation outputs")


def test_a_forced_layout_that_does_not_fit_says_which_does(runner, testnet_model, tmp_path):
    Image.fromarray(np.zeros((240, 240), np.uint8)).save(tmp_path / "black.png")
    result = run(runner, "explain", testnet_model, tmp_path / "black.png", "--layout", "NHWC")
    assert_one_line_error(result, "layout NHWC reads input", "as 240 channels", "looks like NCHW", "(option --layout)")


def test_a_class_the_output_does_not_have(runner, brightness, square_png):
    assert_one_line_error(run(runner, "explain", brightness(), square_png, "--class", "3"),
                          "class 3 does not exist", "(option --class)")


def test_an_output_the_model_does_not_have(runner, brightness, square_png):
    assert_one_line_error(run(runner, "explain", brightness(), square_png, "--output", "logits"), "logits")


def test_a_mean_of_the_wrong_length_prints_plain_numbers(runner, brightness, square_png):
    result = run(runner, "explain", brightness(), square_png, "--mean", "0.1,0.2")
    assert_one_line_error(result, "mean takes one value or 1 (one per channel), got [0.1", "(option --mean)")
    assert "float32" not in result.output


def test_cuda_forced_where_it_cannot_start(runner, brightness, square_png):
    assert_one_line_error(run(runner, "explain", brightness(), square_png, "--device", "cuda"), "CUDA")


def test_a_fixed_size_model_names_the_resize_option(runner, brightness, square_png):
    result = run(runner, "explain", brightness(height=16, width=16), square_png)
    assert_one_line_error(result, "model takes 16x16", "(option --resize)")


def test_resize_explains_a_fixed_size_model_at_the_image_size(runner, brightness, square_png, tmp_path):
    out = tmp_path / "out"
    result = run(runner, "explain", brightness(height=16, width=16), square_png, "--resize", "-p", "offset=4",
                 "--out", out)
    assert result.exit_code == 0, result.output
    assert np.load(out / "saliency.npy").shape == (32, 32)
    assert json.loads((out / "explanation.json").read_text())["model"]["preprocessing"]["resize_to"] == [16, 16]


# --- targets ---------------------------------------------------------------------------------------


def test_an_empty_roi_is_blamed_on_the_roi_not_the_segment(runner, brightness, square_png, tmp_path):
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "roi.png")
    result = run(runner, "explain", brightness(), square_png, "--target", f"mask:{tmp_path / 'roi.png'}")
    assert_one_line_error(result, "region of interest (mask) covers no pixel", "(option --target)")
    assert "segment" not in result.output


def test_an_empty_roi_is_refused_by_the_scores_too():
    from onnxplain.targets import Reference

    with pytest.raises(Exception, match="region of interest is empty"):
        DiceScore().check(Reference(np.ones((4, 4), bool), roi=np.zeros((4, 4), bool)))


def test_a_box_outside_the_image(runner, brightness, square_png):
    assert_one_line_error(run(runner, "explain", brightness(), square_png, "--target", "box:40,40,60,60"), "box")


def test_a_pixel_outside_the_image(runner, brightness, square_png):
    assert_one_line_error(run(runner, "explain", brightness(), square_png, "--target", "pixels:3,3;99,2"), "99")


# --- plugins ---------------------------------------------------------------------------------------


class RaisingScore(DiceScore):
    name = "raising"

    def _distance(self, outputs, reference):
        raise KeyError("score bug")


def test_a_score_plugin_that_raises_on_the_unperturbed_image_is_named(runner, brightness, square_png, monkeypatch):
    installed = plugins._entry_points
    entry = EntryPoint("raising", "test_bad_input:RaisingScore", GROUPS["score"])
    use_entry_points(monkeypatch, lambda group: [e for e in [entry] if e.group == group] + list(installed(group=group)))
    result = run(runner, "explain", brightness(), square_png, "--score", "raising", "-p", "offset=8")
    assert_one_line_error(result, "RaisingScore.calculate_distance ('raising') failed: KeyError")


def test_a_function_registered_as_a_method_is_refused_by_name(runner, brightness, square_png, monkeypatch):
    entry = EntryPoint("joiner", "os.path:join", GROUPS["method"])
    use_entry_points(monkeypatch, lambda group: [e for e in [entry] if e.group == group])
    assert_one_line_error(run(runner, "explain", brightness(), square_png, "--method", "joiner"),
                          "is a function, not a subclass of onnxplain.method.Method")


def test_an_unknown_score(runner, brightness, square_png):
    assert_one_line_error(run(runner, "explain", brightness(), square_png, "--score", "nosuch"), "unknown score")


# --- the output folder: checked before the work, written whole or not at all ------------------------


@pytest.fixture
def no_compute(monkeypatch):
    """Fail the test if a method starts computing."""
    from onnxplain.perturbation import engine

    def refuse(*args, **kwargs):
        raise AssertionError("the method ran before the output folder was checked")

    monkeypatch.setattr(engine.PerturbationMethod, "_attribute", refuse)


def test_out_that_is_a_file(runner, brightness, square_png, tmp_path, no_compute):
    (tmp_path / "taken").write_text("x")
    result = run(runner, "explain", brightness(), square_png, "--out", tmp_path / "taken")
    assert_one_line_error(result, "is a file, not a folder", "(option --out)")


def test_out_below_a_file(runner, brightness, square_png, tmp_path, no_compute):
    (tmp_path / "taken").write_text("x")
    result = run(runner, "explain", brightness(), square_png, "--out", tmp_path / "taken" / "out")
    assert_one_line_error(result, "is a file", "(option --out)")


def test_out_that_holds_someone_elses_files(runner, brightness, square_png, tmp_path, no_compute):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    result = run(runner, "explain", brightness(), square_png, "--out", tmp_path / "mine")
    assert_one_line_error(result, "holds files that onnxplain did not write")
    assert (tmp_path / "mine" / "thesis.tex").exists()


def test_out_on_a_read_only_file_system(runner, brightness, square_png, no_compute):
    result = run(runner, "explain", brightness(), square_png, "--out", "/proc/onnxplain-result")
    assert_one_line_error(result, "cannot write the output folder /proc/onnxplain-result", "(option --out)")


def test_out_that_cannot_be_written(runner, brightness, square_png, tmp_path, monkeypatch, no_compute):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(io.tempfile, "mkdtemp", denied)  # as root, a chmod-ed folder stays writable
    result = run(runner, "explain", brightness(), square_png, "--out", tmp_path / "out")
    assert_one_line_error(result, "cannot write the output folder", "Permission denied")


def test_out_on_a_full_disk_is_refused_before_the_work(runner, brightness, square_png, tmp_path, monkeypatch,
                                                       no_compute):
    monkeypatch.setattr(io.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 1000})())
    result = run(runner, "explain", brightness(), square_png, "--out", tmp_path / "out")
    assert_one_line_error(result, "has 0.0 MiB free", "(option --out)")
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)


def test_a_disk_that_fills_while_saving_leaves_nothing(runner, brightness, square_png, tmp_path, monkeypatch):
    calls = []

    def full(image, path):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(image, path)

    real = io.save_png
    monkeypatch.setattr(io, "save_png", full)
    result = run(runner, "explain", brightness(), square_png, "-p", "offset=8", "--out", tmp_path / "out")
    assert_error_after_progress(result, f"could not write the result in {tmp_path / 'out'}: No space left",
                                "nothing was written")
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)


def test_an_interruption_while_saving_keeps_the_earlier_result(runner, brightness, square_png, tmp_path,
                                                               monkeypatch):
    out = tmp_path / "out"
    assert run(runner, "explain", brightness(), square_png, "-p", "offset=8", "--out", out).exit_code == 0
    before = sorted(p.name for p in out.iterdir())

    def interrupted(record, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "save_text", interrupted)
    result = run(runner, "explain", brightness(), square_png, "--method", "rise", "-p", "n_masks=8", "--out", out)
    assert_error_after_progress(result, "interrupted; nothing was written")
    assert sorted(p.name for p in out.iterdir()) == before and not leftovers(tmp_path)


def test_a_reused_out_holds_only_the_new_result(runner, brightness, square_png, tmp_path):
    out = tmp_path / "out"
    assert run(runner, "explain", brightness(), square_png, "-p", "offset=8", "--out", out).exit_code == 0
    assert (out / "circles.npy").exists()
    result = run(runner, "explain", brightness(), square_png, "--method", "rise", "-p", "n_masks=8", "--out", out)
    assert result.exit_code == 0, result.output
    assert not list(out.glob("circles*")), "files of the earlier HDM run stayed beside RISE's"
    assert json.loads((out / "explanation.json").read_text())["method"]["name"] == "rise"


def test_several_methods_are_written_together_or_not_at_all(runner, brightness, square_png, tmp_path):
    out = tmp_path / "out"
    result = run(runner, "explain", brightness(), square_png, "--method", "hdm", "--method", "lime",
                 "-p", "hdm:offset=8", "-p", "lime:n_samples=-1", "--out", out)
    assert result.exit_code == 1
    assert not out.exists() and not leftovers(tmp_path)


# --- memory -----------------------------------------------------------------------------------------


def test_a_batch_that_cannot_fit_is_refused_with_one_that_can(runner, brightness, square_png, monkeypatch):
    monkeypatch.setattr(batching, "available_memory", lambda: 200_000)
    result = run(runner, "explain", brightness(), square_png, "-p", "offset=8", "--batch-size", "64")
    assert_one_line_error(result, "a batch of", "use a batch size of", "(option --batch-size)")


def test_an_image_too_large_for_any_batch(runner, brightness, square_png, monkeypatch):
    monkeypatch.setattr(batching, "available_memory", lambda: 10_000)
    result = run(runner, "explain", brightness(), square_png, "-p", "offset=8")
    assert_one_line_error(result, "one perturbed image needs about", "explain a smaller image")


def test_running_out_of_memory_suggests_a_smaller_batch(runner, brightness, square_png, monkeypatch):
    from onnxplain.model import OnnxModel

    real = OnnxModel.run_tensor

    def exhausted(self, tensor, output=None):
        if len(tensor) > 1:  # the unperturbed image alone fits
            raise MemoryError
        return real(self, tensor, output)

    monkeypatch.setattr(OnnxModel, "run_tensor", exhausted)
    result = run(runner, "explain", brightness(), square_png, "-p", "offset=8", "--batch-size", "32")
    assert_one_line_error(result, "ran out of memory with 32 perturbed images per batch", "(option --batch-size)")


def test_running_out_of_memory_anywhere_is_one_line(runner, brightness, square_png, monkeypatch):
    from onnxplain import method

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(method, "make_reference", exhausted)
    assert_one_line_error(run(runner, "explain", brightness(), square_png), "ran out of memory", "--batch-size")


def test_large_images_aggregate_without_a_float64_copy_of_the_batch(monkeypatch):
    from onnxplain.perturbation import aggregate
    from onnxplain.perturbation.masks import MaskBatch

    monkeypatch.setattr(aggregate, "_PRODUCT_ELEMENTS", 64)  # force many slices on a small image
    sliced, whole = aggregate.OccludedMean(), aggregate.OccludedMean()
    rng = np.random.default_rng(0)
    masks = rng.random((5, 20, 30)).astype(np.float32)
    values = rng.random(5)

    class Source:
        features, spatial = None, (20, 30)

    for aggregator in (sliced, whole):
        aggregator.begin(Source(), 0.1)
    sliced.add(MaskBatch(0, masks, None), values)
    monkeypatch.setattr(aggregate, "_PRODUCT_ELEMENTS", 1 << 20)
    whole.add(MaskBatch(0, masks, None), values)
    np.testing.assert_array_equal(sliced.finish(), whole.finish())


# --- start-up ----------------------------------------------------------------------------------------


def test_the_command_line_starts_without_loading_onnxruntime():
    # What loads before the first command runs cannot be interrupted gracefully; keep it to click.
    code = "import sys, onnxplain.cli; print(sorted(m for m in ('onnxruntime', 'numpy', 'scipy') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_an_interruption_during_start_up_is_one_line(runner, monkeypatch, tmp_path):
    (tmp_path / "slow_command.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from onnxplain import cli

    monkeypatch.setitem(cli._COMMANDS, "slow", ("slow_command", "command"))
    assert_one_line_error(run(runner, "slow"), "interrupted")


# --- datasets ----------------------------------------------------------------------------------------


def test_evaluate_a_missing_dataset_folder(runner, brightness, tmp_path):
    result = run(runner, "evaluate", brightness(), "--dataset", tmp_path / "nowhere")
    assert_one_line_error(result, "dataset folder not found", "(option --dataset)")


def test_evaluate_a_dataset_of_jpeg_photos_with_png_masks(runner, brightness, bright_square, tmp_path):
    (tmp_path / "set" / "images").mkdir(parents=True)
    (tmp_path / "set" / "segments").mkdir()
    Image.fromarray((bright_square[..., 0] * 255).astype(np.uint8)).save(tmp_path / "set" / "images" / "a.jpg")
    Image.fromarray((bright_square[..., 0] > 0.5).astype(np.uint8) * 255).save(tmp_path / "set" / "segments" / "a.png")
    result = run(runner, "evaluate", brightness(), "--dataset", tmp_path / "set", "--method", "occlusion",
                 "-p", "occlusion:window=8", "-p", "occlusion:stride=8", "--metric", "deletion", "--metric-param",
                 "deletion:steps=4", "--out", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    assert "a.jpg" in (tmp_path / "eval" / "evaluation.csv").read_text()


def test_evaluate_checks_its_output_folder_before_the_work(runner, brightness, square_png, tmp_path, no_compute):
    (tmp_path / "taken").write_text("x")
    result = run(runner, "evaluate", brightness(), square_png, "--out", tmp_path / "taken")
    assert_one_line_error(result, "is a file, not a folder", "(option --out)")


def test_a_result_folder_with_a_file_of_the_users_is_not_replaced(runner, brightness, square_png, tmp_path):
    out = tmp_path / "out"
    assert run(runner, "explain", brightness(), square_png, "-p", "offset=8", "--out", out).exit_code == 0
    (out / "notes.txt").write_text("mine")
    (out / ".git").mkdir()
    result = run(runner, "explain", brightness(), square_png, "-p", "offset=8", "--out", out)
    assert_one_line_error(result, "holds files that onnxplain did not write")
    assert (out / "notes.txt").read_text() == "mine" and (out / ".git").is_dir()


@pytest.mark.parametrize("where", [".", ".."])
def test_the_current_folder_or_its_parent_as_out(runner, brightness, square_png, tmp_path, monkeypatch, where):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    result = run(runner, "explain", brightness(), square_png, "--out", where)
    assert_one_line_error(result, "is the current folder or holds it")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["work", "square.png", *[
        p.name for p in tmp_path.glob("brightness*")]])


def test_out_through_a_link_writes_where_it_points(runner, brightness, square_png, tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert run(runner, "explain", brightness(), square_png, "-p", "offset=8", "--out", tmp_path / "link").exit_code == 0
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "saliency.npy").is_file()


def test_files_added_to_out_during_the_work_are_kept_and_so_is_the_result(brightness, bright_square, tmp_path):
    from onnxplain import OnnxModel, explain

    result = explain(OnnxModel(brightness()), bright_square, method="hdm", offset=8)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(Exception, match="changed during the work") as raised:
        with io.output_folder(out) as staging:
            result.write(staging)
            (out / "arrived.txt").write_text("written by someone else meanwhile")
    assert (out / "arrived.txt").exists()
    kept = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert len(kept) == 1 and str(kept[0]) in str(raised.value) and (kept[0] / "saliency.npy").is_file()


def test_a_replaced_result_leaves_nothing_beside_it(runner, brightness, square_png, tmp_path):
    out = tmp_path / "out"
    for method in ("hdm", "rise"):
        assert run(runner, "explain", brightness(), square_png, "--method", method, "-p",
                   "offset=8" if method == "hdm" else "n_masks=8", "--out", out).exit_code == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert io.is_result_folder(out)


def test_evaluate_does_not_write_over_the_maps_it_scores(runner, brightness, square_png, tmp_path):
    res = tmp_path / "res"
    assert run(runner, "explain", brightness(), square_png, "-p", "offset=8", "--out", res).exit_code == 0
    result = run(runner, "evaluate", brightness(), square_png, "--saliency", res, "--out", res)
    assert_one_line_error(result, "which this run reads", "(option --out)")
    assert (res / "saliency.npy").is_file()


def test_dataset_masks_pair_with_their_image_by_whole_name(tmp_path, bright_square):
    from onnxplain.evaluation.runner import read_dataset

    for folder in ("images", "segments"):
        (tmp_path / folder).mkdir()
    picture = Image.fromarray((bright_square[..., 0] * 255).astype(np.uint8))
    for name in ("cat[1].png", "cat.png"):
        picture.save(tmp_path / "images" / name)
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(tmp_path / "segments" / "cat1.png")
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(tmp_path / "segments" / "cat.v2.png")
    items = {item.name: item for item in read_dataset(tmp_path, channels=1)}
    assert items["cat[1].png"].segment is None and items["cat.png"].segment is None
