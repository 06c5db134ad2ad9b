"""Pictures: what a person needs to read them (scale, units, outlines, why a picture is blank)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage.segmentation import find_boundaries

from onnxplain import OnnxModel, explain, render
from onnxplain.attribution import Attribution
from onnxplain.errors import OnnxplainError
from onnxplain.targets import Target

RECORDS = {
    "hdm": {"method": {"name": "hdm"}, "score": {"name": "hausdorff"}, "aggregator": {"name": "occluded-mean"}},
    "rise": {"method": {"name": "rise"}, "score": {"name": "class-score"}, "aggregator": {"name": "kept-mean"}},
    "lime": {"method": {"name": "lime"}, "score": {"name": "class-score"}, "aggregator": {"name": "linear-surrogate"}},
}


def attribution_of(saliency, *, image=None, segment=None, region=None, record=None, **fields):
    saliency = np.asarray(saliency, np.float32)
    if image is None:
        image = np.zeros((*saliency.shape, 1), np.float32)
    if segment is None:
        segment = np.zeros(saliency.shape, bool)
        segment[4:12, 6:14] = True
    record = RECORDS["hdm"] if record is None else record
    return Attribution(saliency, image, segment, region=region, record=record, **fields)


def square_map(shape=(24, 32), *, signed=False):
    saliency = np.zeros(shape, np.float32)
    saliency[4:12, 6:14] = 1.0
    if signed:
        saliency[14:20, 20:28] = -0.5
    return saliency


def test_isolines_come_at_the_image_size_times_a_whole_zoom():
    large = render.isolines(np.zeros((480, 512, 3)), square_map((480, 512)))
    assert np.asarray(large).shape == (480, 512, 3)  # from 480 px on, exactly the image's size
    small = render.isolines(np.zeros((240, 240, 1)), square_map((240, 240)))
    assert render.zoom((240, 240)) == 2 and np.asarray(small).shape == (480, 480, 3)


def test_saved_isolines_have_the_image_size(testnet_model):
    from onnxplain import OnnxModel, data, explain

    image = data.load_sample(0).image
    result = explain(OnnxModel(testnet_model), image, method="occlusion", window=48, stride=48)
    assert np.asarray(render.pictures(result)["isolines"]).shape == (240, 240, 3)


def test_isolines_lie_over_the_image_itself_in_colour_or_grey():
    red = np.zeros((240, 240, 3), np.float32)
    red[..., 0] = 0.8
    drawn = np.asarray(render.isolines(red, square_map((240, 240))))
    assert (drawn[-1, -1] == (204, 0, 0)).all()  # far from the lines: the image's own colour, not a grey copy
    grey = np.full((240, 240, 1), 0.5, np.float32)
    corner = np.asarray(render.isolines(grey, square_map((240, 240))))[-40:, -40:]
    assert (corner == 128).all()
    assert (np.asarray(render.isolines(red, np.zeros((240, 240))))[:40, :40] == (204, 0, 0)).all()  # no lines


def test_a_signed_map_is_centred_on_white_and_a_positive_one_starts_at_zero():
    signed = render.map_scale(square_map(signed=True))
    assert (signed.norm.vmin, signed.norm.vmax) == (-1.0, 1.0)
    assert signed.to_rgba(np.zeros(1), bytes=True)[0].tolist() == [255, 255, 255, 255]
    top, bottom = signed.to_rgba(np.array([1.0, -1.0]), bytes=True)
    assert top[0] > top[2] and bottom[2] > bottom[0]  # red above zero, blue below
    positive = render.map_scale(square_map() + 2.0, color_map="viridis")
    assert (positive.norm.vmin, positive.norm.vmax) == (0.0, 3.0) and positive.cmap.name == "viridis"
    heat = np.asarray(render.heatmap(square_map(signed=True)))
    assert (heat[0, 0] == 255).all()  # a pixel of value 0 is white


def test_the_segment_outline_lies_on_the_segment_boundary():
    segment = np.zeros((24, 32), bool)
    segment[6:18, 8:20] = True
    drawn = np.asarray(render.overlay(np.full((24, 32, 1), 0.5), square_map(), segment=segment))
    boundary = find_boundaries(segment, mode="inner")
    assert (drawn[boundary] == render.SEGMENT_COLOR).all()
    assert not (drawn[12, 14] == render.SEGMENT_COLOR).all()  # the inside stays the map over the image
    assert not (drawn[0, 0] == render.SEGMENT_COLOR).all()


def test_a_few_target_pixels_get_rings_not_dots():
    region = np.zeros((64, 64), bool)
    region[30, 40] = True
    drawn = np.asarray(render.overlay(np.zeros((64, 64, 1)), np.zeros((64, 64)), region=region))
    marked = np.argwhere((drawn == render.TARGET_COLOR).all(axis=2))
    assert (drawn[30, 40] == render.TARGET_COLOR).all() and len(marked) > 20
    assert np.abs(marked - (30, 40)).max() >= 6  # the ring reaches well beyond the pixel


def test_a_blank_map_or_circle_picture_says_why():
    assert "zero everywhere" in render.blank_reason(np.zeros((8, 8)))
    assert render.blank_reason(np.full((8, 8), 0.3)) == "the map is 0.3 everywhere: it ranks no pixel above another"
    better = render.circle_values(np.array([5.0, 7.0]), 4.0, "better")
    assert render.blank_reason(better, kind="better", noun="Hausdorff distance").startswith(
        "no circle made the Hausdorff distance better")
    assert render.blank_reason(render.circle_values(np.array([5.0, 7.0]), 4.0, "worse"), kind="worse") is None
    assert render.blank_reason(square_map()) is None
    assert render.blank_reason(np.full(3, 2.0), kind="better").startswith("every circle gave the same value (2)")
    with pytest.raises(OnnxplainError, match="kind is one of map, raw, better, worse; got 'circles'"):
        render.blank_reason(np.zeros(3), kind="circles")
    # An all-zero attribution still draws every picture, with the sentence instead of an empty scale.
    circles = np.array([[8, 8, 4], [16, 20, 4]])
    made = render.pictures(attribution_of(np.zeros((24, 32)), values=np.array([4.0, 4.0]), baseline_value=4.0,
                                          arrays={"circles": circles}))
    assert {"summary", "heatmap", "overlay", "isolines", "circles_raw", "circles_better", "circles_worse"} == set(made)
    plain = render.pictures(attribution_of(square_map(), values=np.array([3.0, 5.0]), baseline_value=4.0,
                                           arrays={"circles": circles}))
    assert np.asarray(made["heatmap"]).shape == np.asarray(plain["heatmap"]).shape


def test_the_label_names_the_method_the_score_and_its_unit():
    assert render.map_label(attribution_of(square_map())) == "HDM: increase of the Hausdorff distance when hidden (px)"
    assert render.map_label(attribution_of(square_map(), record=RECORDS["rise"])) == \
        "RISE: increase of the mean class probability when kept"
    lime = render.map_label(attribution_of(square_map(), record=RECORDS["lime"]))
    assert lime.startswith("LIME:") and "superpixel" in lime
    mine = {"method": {"name": "mine"}, "score": {"name": "iou"}, "aggregator": {"name": "median"}}
    assert render.map_label(attribution_of(square_map(), record=mine)) == \
        "mine: relevance for the iou distance (positive: supports the target)"
    assert render.map_label(attribution_of(square_map(), record={})) == "Relevance (positive: supports the target)"


@pytest.fixture
def box_attribution(brightness, bright_square):
    model = OnnxModel(brightness(), device="cpu")
    return explain(model, bright_square, method="occlusion", window=6, stride=3, target=Target.box(8, 6, 18, 14))


def test_save_writes_a_summary_of_four_panels(box_attribution, tmp_path):
    written = {p.name for p in box_attribution.save(tmp_path / "out")}
    assert {"summary.png", "heatmap.png", "overlay.png", "isolines.png"} <= written
    summary = np.asarray(Image.open(tmp_path / "out" / "summary.png").convert("RGB"))
    height, width, _ = summary.shape
    assert width > 3 * height
    # Panels are the 32x32 image zoomed 15 times, on white: a row through them crosses four
    # 480-pixel runs of picture (the colour bar is a narrow run of its own).
    row = (summary[height // 2] != 255).any(axis=1)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])))
    runs = edges[1::2] - edges[::2]
    assert (runs == 480).sum() == 4


def test_a_reloaded_attribution_draws_the_same_pictures(box_attribution, tmp_path):
    box_attribution.save(tmp_path / "first")
    Attribution.load(tmp_path / "first").save(tmp_path / "again")
    for name in ("summary", "heatmap", "overlay", "isolines"):
        assert (tmp_path / "first" / f"{name}.png").read_bytes() == (tmp_path / "again" / f"{name}.png").read_bytes()


def test_a_segment_of_another_size_than_the_image_is_drawn_at_the_image_size():
    segment = np.zeros((12, 16), bool)
    segment[3:9, 4:10] = True
    made = render.pictures(attribution_of(square_map(), segment=segment))
    assert np.asarray(made["summary"]).ndim == 3


def test_drawing_leaves_pyplot_alone():
    code = ("import sys, numpy as np\nfrom onnxplain import render\nfrom onnxplain.attribution import Attribution\n"
            "render.pictures(Attribution(np.eye(8, dtype=np.float32), np.zeros((8, 8, 1)), np.eye(8, dtype=bool)))\n"
            "assert 'matplotlib.pyplot' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_few_hot_pixels_saturate_the_scale_and_the_bar_says_so():
    from onnxplain.render import map_scale

    smooth = np.linspace(-1.0, 2.0, 10_000).reshape(100, 100)
    scale = map_scale(smooth)
    assert not scale.saturated and (scale.norm.vmin, scale.norm.vmax) == (-2.0, 2.0)
    spiky = smooth.copy()
    spiky[0, :3] = 50.0  # 0.03 % of the pixels, 25 times the rest: a gradient map's hot pixels
    scale = map_scale(spiky)
    assert scale.saturated
    assert scale.norm.vmax == pytest.approx(np.percentile(np.abs(spiky), 99.5))
    assert scale.norm.vmin == -scale.norm.vmax
