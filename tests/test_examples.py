"""The scripts in examples/ run as a user runs them, and say what they claim."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, *args, cwd):
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_write_a_plugin_finds_the_decider_rows(tmp_path):
    out = run_example("write_a_plugin.py", cwd=tmp_path)
    found = re.search(r"rows are (\d+) \(the decider shape spans rows \[(\d+), (\d+)\]", out)
    row, first, last = map(int, found.groups())
    assert first <= row <= last


def test_explain_your_model_points_at_the_decider(tmp_path):
    pytest.importorskip("torch")
    out = run_example("explain_your_model.py", "--out", tmp_path / "roi", cwd=tmp_path)
    decider, background = map(float, re.search(r"decider (\S+), background (\S+)", out).groups())
    assert decider > 10 * abs(background) and decider > 0.01
    assert (tmp_path / "roi" / "explanation" / "summary.png").is_file()


def test_explain_pretrained_model_end_to_end(tmp_path):
    cache = Path(__file__).resolve().parent.parent / ".cache" / "real-models"
    out = run_example("explain_pretrained_model.py", "--out", tmp_path / "text", "--cache", cache, cwd=tmp_path)
    gap, random_gap, spread = map(float, re.search(r"gap \(SRG\) (\S+), random maps (\S+) ± (\S+)", out).groups())
    assert gap > random_gap + spread
    assert (tmp_path / "text" / "summary.png").is_file()
