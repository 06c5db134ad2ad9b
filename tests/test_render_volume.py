"""Pictures of volumes: slices through the peak, upright whatever the affine, in proportion to the spacing."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import measure

from onnxplain import render, render_volume
from onnxplain.attribution import Attribution
from onnxplain.captions import header

RECORD = {"method": {"name": "hdm"}, "score": {"name": "hausdorff"}, "aggregator": {"name": "occluded-mean"}}
# Array axis 0 runs anterior, 1 superior and 2 to the patient's left (k flipped): a permuted, flipped volume.
PERMUTED = np.array([[0, 0, -3.0, 40], [0.8, 0, 0, -10], [0, 1.2, 0, 5], [0, 0, 0, 1]])
ANGLE = np.deg2rad(15)  # a volume tilted about the S axis: each array axis still runs nearest one world axis
OBLIQUE = np.array([[np.cos(ANGLE), -np.sin(ANGLE), 0, 0], [np.sin(ANGLE), np.cos(ANGLE), 0, 0],
                    [0, 0, 1, 0], [0, 0, 0, 1]])


def blob(shape, centre, spacing=(1.0, 1.0, 1.0), width=3.0):
    """A Gaussian of `width` mm around the voxel `centre`, 1 at its peak."""
    offset = (np.indices(shape).T - np.asarray(centre)).T * np.asarray(spacing)[:, None, None, None]
    return np.exp(-(offset**2).sum(axis=0) / (2 * width**2)).astype(np.float32)


def volume_attribution(shape=(24, 28, 20), *, centre=(12, 14, 10), radius=6.0, spacing=(1.0, 1.0, 1.0),
                       affine=None, peak=(14, 18, 12), region=None):
    """A ball segment of `radius` mm around `centre` (round in millimetres, whatever the spacing), a map
    peaked at `peak`; `record["volume"]` only when an `affine` is given."""
    segment = blob(shape, centre, spacing, width=1.0) >= np.exp(-(radius**2) / 2)
    image = (0.2 + 0.6 * segment + 0.05 * np.indices(shape)[0] / shape[0])[..., None].astype(np.float32)
    record = dict(RECORD)
    if affine is not None:
        record["volume"] = {"affine": np.asarray(affine).tolist(), "spacing": list(spacing), "shape": list(shape),
                            "file": "volume.nii.gz"}
    return Attribution(blob(shape, peak, spacing), image, segment, region=region, record=record)


def strong(picture, channel):
    """Pixels where `channel` (0 red, 2 blue) outshines both others by 100."""
    rgb = np.asarray(picture).astype(int)
    others = [c for c in range(3) if c != channel]
    return (rgb[..., channel] - rgb[..., others].max(axis=2)) > 100


def test_a_volume_gets_a_summary_slices_and_a_mosaic_in_rgb():
    made = render_volume.pictures(volume_attribution(spacing=(0.8, 1.2, 3.0), affine=PERMUTED))
    assert set(made) == {"summary", "slices", "mosaic"}
    for picture in made.values():
        assert picture.mode == "RGB" and picture.width >= 600 and picture.height >= 250
        assert len(np.unique(np.asarray(picture).reshape(-1, 3), axis=0)) > 50  # drawn, not blank


def test_axial_slices_are_across_the_axis_the_affine_sends_superior():
    assert {n: p.normal for n, p in render_volume.planes().items()} == {"axial": 2, "coronal": 1, "sagittal": 0}
    permuted = render_volume.planes(PERMUTED)
    assert {n: p.normal for n, p in permuted.items()} == {"axial": 1, "coronal": 0, "sagittal": 2}
    assert (permuted["axial"].across, permuted["axial"].across_sign) == (2, -1)  # k runs to the left: drawn reversed
    assert {n: p.normal for n, p in render_volume.planes(OBLIQUE).items()} == {"axial": 2, "coronal": 1, "sagittal": 0}
    degenerate = np.diag([0.0, 1.0, 1.0, 1.0])  # a zero column orients nothing: the array's own axes
    assert render_volume.planes(degenerate) == render_volume.planes()


@pytest.mark.parametrize("affine", [np.eye(4), PERMUTED, OBLIQUE], ids=["identity", "permuted", "oblique"])
def test_every_slice_is_upright_right_on_the_right(affine):
    shape = (24, 28, 20)
    world = np.einsum("ab,b...->a...", affine[:3, :3], np.indices(shape).astype(float))  # R, A, S of each voxel
    for name, (right, up) in {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}.items():
        plane = render_volume.planes(affine)[name]
        index = shape[plane.normal] // 2
        assert (np.diff(plane.cut(world[right], index), axis=1) > 0).all(), f"{name}: not growing to the right"
        assert (np.diff(plane.cut(world[up], index), axis=0) < 0).all(), f"{name}: not growing upwards"


def test_the_slices_go_through_the_peak_of_the_map_signed_or_not():
    attribution = volume_attribution(spacing=(0.8, 1.2, 3.0), affine=PERMUTED, peak=(14, 18, 12))
    assert render_volume.orthogonal_slices(attribution) == {"axial": (1, 18), "coronal": (0, 14), "sagittal": (2, 12)}
    attribution.map = attribution.map - 1.5 * blob(attribution.map.shape, (4, 5, 6))  # a deeper trough elsewhere
    assert render_volume.orthogonal_slices(attribution) == {"axial": (1, 5), "coronal": (0, 4), "sagittal": (2, 6)}
    attribution.map = np.zeros_like(attribution.map)  # no peak: through the segment's middle
    assert render_volume.peak(attribution.map, attribution.segment) == (12, 14, 10)


def test_slices_keep_the_proportions_of_anisotropic_voxels():
    # 0.6 x 0.8 x 2 mm voxels: a ball drawn voxel for voxel would be 3.3 times taller than wide in coronal.
    attribution = volume_attribution((30, 24, 10), centre=(15, 12, 5), radius=6.5, spacing=(0.6, 0.8, 2.0),
                                     affine=np.diag([0.6, 0.8, 2.0, 1.0]), peak=(15, 12, 5))
    drawn = np.asarray(render_volume.pictures(attribution)["slices"])
    green = (drawn == render.SEGMENT_COLOR).all(axis=2)
    green[-render._LEGEND - render._PAD:] = False  # the legend's sample line
    outlines = [p for p in measure.regionprops(measure.label(green)) if p.area > 50]
    assert len(outlines) == 3  # the segment's outline, in each plane
    for outline in outlines:
        top, left, bottom, right = outline.bbox
        assert 0.85 < (bottom - top) / (right - left) < 1.18, outline.bbox


def test_a_signed_map_is_blue_where_negative_and_a_positive_one_is_not():
    shape = (40, 40, 40)
    positive = volume_attribution(shape, centre=(20, 20, 20), peak=(20, 20, 20))
    signed = volume_attribution(shape, centre=(20, 20, 20), peak=(20, 20, 20))
    signed.map = signed.map - 0.9 * blob(shape, (8, 8, 20))  # negative in the axial slice through the peak
    for attribution, blue in ((signed, True), (positive, False)):
        tiles = np.asarray(render_volume.pictures(attribution)["slices"])[:, :-render_volume._BAR]  # not the colour bar
        assert strong(tiles, 0).sum() > 100
        assert bool(strong(tiles, 2).sum() > 100) is blue


def test_the_mosaic_spans_the_segment_and_the_strongest_voxels():
    shape = (20, 20, 40)
    attribution = volume_attribution(shape, centre=(10, 10, 10), radius=4.5, peak=(10, 10, 16))
    assert render_volume.mosaic_slices(attribution) == list(range(6, 20))  # segment 6-14, top 1 % of the map to 19
    empty = Attribution(np.zeros(shape, np.float32), np.zeros((*shape, 1), np.float32), np.zeros(shape, bool))
    spread = render_volume.mosaic_slices(empty)
    assert len(spread) == render_volume.MOSAIC_SLICES and (spread[0], spread[-1]) == (0, 39)
    render_volume.pictures(empty)  # a blank map draws, with the sentence saying why


def test_the_same_attribution_draws_the_same_bytes_and_so_does_a_reloaded_one(tmp_path):
    attribution = volume_attribution(spacing=(0.8, 1.2, 3.0), affine=PERMUTED,
                                     region=blob((24, 28, 20), (14, 18, 12)) > 0.5)
    first, second = render_volume.pictures(attribution), render_volume.pictures(attribution)
    assert all(first[name].tobytes() == second[name].tobytes() for name in first)
    attribution.save(tmp_path / "saved")
    reloaded = render_volume.pictures(Attribution.load(tmp_path / "saved"))
    assert all(first[name].tobytes() == reloaded[name].tobytes() for name in first)
    assert (np.asarray(first["slices"]) == render.TARGET_COLOR).all(axis=2).any()  # the region's outline


def test_render_pictures_hands_volumes_over_and_leaves_images_alone():
    attribution = volume_attribution()
    made = render.pictures(attribution)
    assert set(made) == {"summary", "slices", "mosaic"}
    assert made["slices"].tobytes() == render_volume.pictures(attribution)["slices"].tobytes()
    image = Attribution(np.eye(24, dtype=np.float32), np.zeros((24, 24, 1), np.float32), np.eye(24, dtype=bool),
                        record=RECORD)
    assert set(render.pictures(image)) == {"summary", "heatmap", "overlay", "isolines"}
    series = Attribution(np.zeros((2, 4, 4, 4), np.float32), np.zeros((2, 4, 4, 4, 1)), np.zeros((2, 4, 4, 4), bool))
    assert render.pictures(series) == {}


def test_a_volume_box_target_is_named_in_voxels():
    record = {**RECORD, "target": {"kind": "box", "box": [0, 4, 8, 16, 20, 24], "class": 1}}
    attribution = volume_attribution()
    attribution.record = record
    assert header(record).endswith("target: box i 0-16, j 4-20, k 8-24, class 1")
    voxels = {**RECORD, "target": {"kind": "voxels", "voxels": [[1, 2, 3], [4, 5, 6]], "class": None}}
    assert header(voxels).endswith("target: 2 voxel(s)")
    render_volume.pictures(attribution)  # the 2-D header would read the box as four numbers
