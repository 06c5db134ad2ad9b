"""explain --dataset and evaluate --dataset: one folder per image, a table, resume, the local and Ray engines."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_cli import assert_one_line_error, run

from onnxplain import data, io, testnet

CHEAP = ("--method", "occlusion", "-p", "window=60", "-p", "stride=60")  # 16 forward passes per testnet image
COUNT = 50


def cli(*args: object, check: bool = True) -> subprocess.CompletedProcess:
    """The command line in its own process, as a user runs it."""
    done = subprocess.run([sys.executable, "-m", "onnxplain", *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    assert not check or done.returncode == 0, done.stdout + done.stderr
    return done


def finished(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir() and io.is_result_folder(p)) if out.is_dir() else []


def leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*") if p.name.endswith((".partial", ".old", ".tmp"))]


def table(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """50 testnet images explained by a run killed with SIGKILL part way, then by the same command again."""
    folder = tmp_path_factory.mktemp("dataset")
    testnet.write_dataset(folder / "set", COUNT, seed=5)
    out = folder / "out"
    command = ["explain", data.testnet_model_path(), "--dataset", folder / "set", *CHEAP, "--out", out]
    process = subprocess.Popen([sys.executable, "-m", "onnxplain", *map(str, command)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(finished(out)) < 5 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = {p.name: (p / "explanation.json").stat() for p in finished(out)}
    resumed = cli(*command)
    return {"out": out, "set": folder / "set", "before": before, "resumed": resumed}


def test_a_killed_run_resumes_without_recomputing_or_keeping_half_results(killed_and_resumed):
    out, before = killed_and_resumed["out"], killed_and_resumed["before"]
    assert 5 <= len(before) < COUNT  # killed part way
    assert f"{COUNT - len(before)} explained now, {len(before)} done before (skipped)" in killed_and_resumed[
        "resumed"].stdout
    results = finished(out)
    assert len(results) == COUNT and all((p / "saliency.npy").is_file() for p in results)
    for name, stat in before.items():  # the same files, untouched
        now = (out / name / "explanation.json").stat()
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert not leftovers(out)
    rows = table(out)
    assert [row["image"] for row in rows] == [f"{i:06d}.png" for i in range(COUNT)]
    assert {row["status"] for row in rows} == {"done"} and all(row["occlusion_evaluations"] == "16" for row in rows)
    record = json.loads((out / "000003.png" / "explanation.json").read_text())
    assert record["image_file"].endswith("000003.png") and record["segment_file"].endswith("000003.png")


def test_ray_gives_the_same_maps_as_the_local_engine(killed_and_resumed, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    done = cli("explain", data.testnet_model_path(), "--dataset", killed_and_resumed["set"], *CHEAP, "--out", out,
               "--engine", "ray", "--workers", "2")
    assert f"{COUNT} explained now" in done.stdout
    local = killed_and_resumed["out"]
    for index in range(COUNT):
        name = f"{index:06d}.png"
        assert np.array_equal(np.load(out / name / "saliency.npy"), np.load(local / name / "saliency.npy")), name
    record = json.loads((out / "000000.png" / "explanation.json").read_text())
    assert record["model"]["path"] == str(data.testnet_model_path())  # not the worker's copy


# --- layouts and formats ----------------------------------------------------------------------------


def write_png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image[..., 0] * 255).astype(np.uint8)).save(path)
    return path


def write_nifti(path: Path, array: np.ndarray) -> Path:
    import nibabel

    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(nibabel.Nifti1Image(array.astype(np.float32), np.eye(4)), path)
    return path


HDM = ("-p", "offset=8")


def test_nested_folders_png_jpeg_and_nifti(runner, brightness, bright_square, tmp_path):
    write_png(tmp_path / "set" / "a.png", bright_square)
    write_png(tmp_path / "set" / "deep" / "er" / "b.jpg", bright_square)
    write_nifti(tmp_path / "set" / "scans" / "c.nii.gz", bright_square[..., 0] * 1000 - 200)  # scanner units
    (tmp_path / "set" / "notes.txt").write_text("not an image")
    result = run(runner, "explain", brightness(), "--dataset", tmp_path / "set", *HDM, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "3 images: 3 explained now, 0 done before" in result.output
    for name in ("a.png", "deep/er/b.jpg", "scans/c.nii.gz"):
        assert io.is_result_folder(tmp_path / "out" / name), name
    image = np.load(tmp_path / "out" / "scans" / "c.nii.gz" / "image.npy")
    assert np.allclose(image, bright_square / 0.9)  # the slice's own range scaled to [0, 1]


def test_the_images_layout_pairs_segments_by_relative_path(runner, brightness, bright_square, tmp_path):
    write_png(tmp_path / "set" / "images" / "sub" / "a.png", bright_square)
    segment = np.zeros_like(bright_square)
    segment[:4, :4] = 1
    write_png(tmp_path / "set" / "segments" / "sub" / "a.png", segment)
    write_png(tmp_path / "set" / "other.png", bright_square)  # outside images/: not part of the dataset
    result = run(runner, "explain", brightness(), "--dataset", tmp_path / "set", *HDM, "--out", tmp_path / "out")
    assert result.exit_code == 0 and "1 images:" in result.output, result.output
    record = json.loads((tmp_path / "out" / "sub" / "a.png" / "explanation.json").read_text())
    assert record["reference"] == {"source": "segment", "pixels": 16}


def test_evaluate_writes_one_folder_per_image_and_the_tables_of_all(runner, brightness, bright_square, tmp_path):
    for name in ("a.png", "b.png"):
        write_png(tmp_path / "set" / name, bright_square)
    command = ("evaluate", brightness(), "--dataset", tmp_path / "set", "--method", "hdm", "-p", "hdm:offset=8",
               "--metric", "deletion", "--metric-param", "deletion:steps=4", "--out", tmp_path / "out")
    result = run(runner, *command)
    assert result.exit_code == 0, result.output
    for name in ("a.png", "b.png"):
        rows = json.loads((tmp_path / "out" / name / "evaluation.json").read_text())["rows"]
        assert [row["image"] for row in rows] == [name]
    rows = (tmp_path / "out" / "evaluation.csv").read_text().splitlines()
    assert len(rows) == 3 and "deletion_auc" in rows[0]
    assert (tmp_path / "out" / "curves.png").is_file() and len(table(tmp_path / "out")) == 2
    again = run(runner, *command)
    assert again.exit_code == 0 and "0 evaluated now, 2 done before (skipped)" in again.output, again.output
    assert (tmp_path / "out" / "evaluation.csv").read_text().splitlines() == rows


# --- bad input: one line each, nothing lost -------------------------------------------------------------


def test_an_unreadable_image_in_the_middle_is_reported_and_the_rest_goes_on(runner, brightness, bright_square,
                                                                             tmp_path):
    write_png(tmp_path / "set" / "a.png", bright_square)
    (tmp_path / "set" / "b.png").write_bytes(b"not a png")
    write_png(tmp_path / "set" / "c.png", bright_square)
    result = run(runner, "explain", brightness(), "--dataset", tmp_path / "set", *HDM, "--out", tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Failed: b.png: " in result.output and "is not an image file that Pillow can read" in result.output
    assert "3 images: 2 explained now, 0 done before (skipped), 1 failed" in result.output
    rows = {row["image"]: row for row in table(tmp_path / "out")}
    assert rows["b.png"]["status"] == "failed" and "Pillow can read" in rows["b.png"]["error"]
    assert rows["a.png"]["status"] == rows["c.png"]["status"] == "done"
    assert [p.name for p in finished(tmp_path / "out")] == ["a.png", "c.png"]


def test_a_3d_nifti_volume_is_that_images_error(runner, brightness, bright_square, tmp_path):
    write_png(tmp_path / "set" / "a.png", bright_square)
    write_nifti(tmp_path / "set" / "volume.nii", np.zeros((32, 32, 5)))
    result = run(runner, "explain", brightness(), "--dataset", tmp_path / "set", *HDM, "--out", tmp_path / "out")
    assert result.exit_code == 1 and "1 failed" in result.output, result.output
    assert "Failed: volume.nii: " in result.output and "this needs a 2-D image" in result.output
    assert [p.name for p in finished(tmp_path / "out")] == ["a.png"]


def test_a_dataset_folder_with_no_images(runner, brightness, tmp_path):
    (tmp_path / "set" / "sub").mkdir(parents=True)
    (tmp_path / "set" / "readme.txt").write_text("x")
    result = run(runner, "explain", brightness(), "--dataset", tmp_path / "set", "--out", tmp_path / "out")
    assert_one_line_error(result, "holds no image files", "(option --dataset)")
    assert not (tmp_path / "out").exists()


def test_a_missing_dataset_folder(runner, brightness, tmp_path):
    result = run(runner, "explain", brightness(), "--dataset", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert_one_line_error(result, "dataset folder not found", "(option --dataset)")


def test_an_unreachable_ray_address_fails_fast(runner, brightness, bright_square, tmp_path):
    pytest.importorskip("ray")
    write_png(tmp_path / "set" / "a.png", bright_square)
    started = time.monotonic()
    result = run(runner, "explain", brightness(), "--dataset", tmp_path / "set", "--engine", "ray",
                 "--address", "127.0.0.1:1", "--out", tmp_path / "out")
    assert_one_line_error(result, "cannot reach the Ray cluster at 127.0.0.1:1", "check --address")
    assert time.monotonic() - started < 10 and not (tmp_path / "out").exists()


def test_ray_missing_gives_the_install_line(runner, brightness, bright_square, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    write_png(tmp_path / "set" / "a.png", bright_square)
    result = run(runner, "explain", brightness(), "--dataset", tmp_path / "set", "--engine", "ray",
                 "--out", tmp_path / "out")
    assert_one_line_error(result, 'pip install "onnxplain[ray]"')


def test_an_interruption_keeps_the_finished_results_and_the_next_run_resumes(runner, brightness, bright_square,
                                                                             tmp_path, monkeypatch):
    from onnxplain.datasets import ExplainWork

    for name in ("a.png", "b.png", "c.png"):
        write_png(tmp_path / "set" / name, bright_square)
    work = ExplainWork.__call__
    calls = []

    def interrupted_on_the_second(self, model, payload):
        calls.append(payload[0].name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return work(self, model, payload)

    monkeypatch.setattr(ExplainWork, "__call__", interrupted_on_the_second)
    command = ("explain", brightness(), "--dataset", tmp_path / "set", *HDM, "--out", tmp_path / "out")
    result = run(runner, *command)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert lines[-1].startswith("Error: interrupted; 1 of 3 results are whole") and "the same command" in lines[-1]
    assert [p.name for p in finished(tmp_path / "out")] == ["a.png"] and not leftovers(tmp_path / "out")
    assert [row["image"] for row in table(tmp_path / "out")] == ["a.png"]
    monkeypatch.setattr(ExplainWork, "__call__", work)
    again = run(runner, *command)
    assert again.exit_code == 0 and "2 explained now, 1 done before (skipped)" in again.output, again.output


def test_resuming_with_other_settings_is_refused(runner, brightness, bright_square, tmp_path):
    write_png(tmp_path / "set" / "a.png", bright_square)
    model = brightness()
    assert run(runner, "explain", model, "--dataset", tmp_path / "set", *HDM, "--out", tmp_path / "out").exit_code == 0
    result = run(runner, "explain", model, "--dataset", tmp_path / "set", "-p", "offset=4", "--seed", "3",
                 "--out", tmp_path / "out")
    assert_one_line_error(result, "holds a run with other settings", "offset: 8 -> 4", "seed: 0 -> 3",
                          "give another folder", "(option --out)")


def test_leftovers_of_a_killed_write_are_removed_and_a_foreign_folder_is_refused(runner, brightness, bright_square,
                                                                                 tmp_path):
    write_png(tmp_path / "set" / "a.png", bright_square)
    command = ("explain", brightness(), "--dataset", tmp_path / "set", *HDM, "--out", tmp_path / "out")
    assert run(runner, *command).exit_code == 0
    (tmp_path / "out" / ".b.png.x1.partial").mkdir()
    (tmp_path / "out" / ".results.csv.x2.tmp").write_text("half")
    assert run(runner, *command).exit_code == 0 and not leftovers(tmp_path / "out")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    result = run(runner, *command[:-1], tmp_path / "mine")
    assert_one_line_error(result, "holds files that are not a dataset run", "(option --out)")


def test_engine_options_need_a_dataset(runner, brightness, square_png):
    result = run(runner, "explain", brightness(), square_png, "--engine", "ray")
    assert result.exit_code == 2 and "give --dataset DIR" in result.output
