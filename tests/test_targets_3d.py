"""Targets on 3-D volumes: boxes and voxels in array-axis order, refused when they do not fit; 2-D unchanged."""

import numpy as np
import pytest

from onnxplain.errors import OnnxplainError
from onnxplain.targets import Target, make_reference

VOLUME = (12, 10, 8)  # (I, J, K)


def test_a_volume_box_covers_its_voxels_in_array_axis_order():
    target = Target.parse("box:2,3,4,5,7,6")
    assert target == Target.voxel_box((2, 3, 4), (5, 7, 6))
    assert target.kind == "box" and target.box_corners == (2, 3, 4, 5, 7, 6)
    region = target.region(VOLUME)
    expected = np.zeros(VOLUME, bool)
    expected[2:5, 3:7, 4:6] = True  # ends excluded
    np.testing.assert_array_equal(region, expected)
    assert region.sum() == 3 * 4 * 2


def test_voxels_cover_exactly_the_listed_voxels():
    target = Target.parse("voxels:1,2,3; 11,9,7")
    assert target == Target.voxels([(1, 2, 3), (11, 9, 7)])
    assert target.kind == "voxels" and target.voxel_list == ((1, 2, 3), (11, 9, 7))
    region = target.region(VOLUME)
    assert region.sum() == 2 and region[1, 2, 3] and region[11, 9, 7]


@pytest.mark.parametrize("spec, complaint", [
    ("box:0,0,0,13,10,8", r"box \(0, 0, 0, 13, 10, 8\) reaches outside the output \(12x10x8 voxels\)"),
    ("box:-1,0,0,4,4,4", r"box \(-1, 0, 0, 4, 4, 4\) reaches outside the output \(12x10x8 voxels\)"),
    ("voxels:1,1,1;12,0,0", r"voxel \(12, 0, 0\) is outside the output \(12x10x8 voxels\)"),
    ("voxels:0,0,8", r"voxel \(0, 0, 8\) is outside the output \(12x10x8 voxels\)"),
])
def test_a_box_or_voxel_outside_the_volume_is_refused(spec, complaint):
    with pytest.raises(OnnxplainError, match=complaint):
        Target.parse(spec).region(VOLUME)


@pytest.mark.parametrize("target, complaint", [
    (Target.box(0, 0, 4, 4), r"box \(0, 0, 4, 4\) is an image's \(x0, y0, x1, y1\) but the model output is a volume "
                             r"shaped \(12, 10, 8\); give box:I0,J0,K0,I1,J1,K1 \(voxel indices, ends excluded\)$"),
    (Target.pixels([(1, 2)]), r"pixel targets \(x, y\) are for images but the model output is a volume shaped "
                              r"\(12, 10, 8\); give voxels:I,J,K;I,J,K$"),
])
def test_an_image_target_for_a_volume_names_the_volume_form(target, complaint):
    with pytest.raises(OnnxplainError, match=complaint) as caught:
        target.region(VOLUME)
    assert "\n" not in str(caught.value) and caught.value.parameters == ("target",)


@pytest.mark.parametrize("target, complaint", [
    (Target.voxel_box((0, 0, 0), (2, 2, 2)), r"is a volume's \(i0, j0, k0, i1, j1, k1\) but the model output is an "
                                             r"image shaped \(32, 32\); give box:X0,Y0,X1,Y1"),
    (Target.voxels([(1, 2, 3)]), r"voxel targets \(i, j, k\) are for volumes but the model output is an image "
                                 r"shaped \(32, 32\); give pixels:X,Y;X,Y"),
])
def test_a_volume_target_for_an_image_names_the_image_form(target, complaint):
    with pytest.raises(OnnxplainError, match=complaint):
        target.region((32, 32))


def test_box_and_point_targets_refuse_outputs_that_are_neither_images_nor_volumes():
    with pytest.raises(OnnxplainError, match=r"box targets fit 2-D images and 3-D volumes; give a mask target"):
        Target.box(0, 0, 2, 2).region((4, 4, 4, 4))


def test_a_region_of_interest_volume_of_another_shape_is_refused():
    roi = Target.from_mask(np.ones((12, 10, 7), bool))
    with pytest.raises(OnnxplainError, match=r"the region-of-interest volume is shaped \(12, 10, 7\) but the model "
                                             r"output is shaped \(12, 10, 8\); give a region-of-interest volume"):
        roi.region(VOLUME)
    same = np.zeros(VOLUME, bool)
    same[3, 4, 5] = True
    np.testing.assert_array_equal(Target.from_mask(same).region(VOLUME), same)


@pytest.mark.parametrize("spec, complaint", [
    ("box:1,2,3,4,5", "cannot read target 'box:1,2,3,4,5'; use class, mask:PATH, .*box:I0,J0,K0,I1,J1,K1"),
    ("box:5,0,0,4,4,4", r"a volume's box needs i0 < i1, j0 < j1 and k0 < k1, got \(5, 0, 0, 4, 4, 4\)"),
    ("voxels:1,2", "voxels take 3 numbers each, got 1,2; give voxels:I,J,K;I,J,K"),
    ("pixels:1,2,3", "pixels take 2 numbers each, got 1,2,3; give pixels:X,Y;X,Y"),
    ("voxels:", r"a voxel target needs at least one \(i, j, k\) voxel"),
    ("voxels:a,b,c", "cannot read target 'voxels:a,b,c': invalid literal"),
])
def test_bad_volume_forms_are_refused_when_parsed(spec, complaint):
    with pytest.raises(OnnxplainError, match=complaint):
        Target.parse(spec)


def test_describe_a_volume_target():
    assert Target.parse("box:2,3,4,5,7,6").of_class(1).describe() == {
        "kind": "box", "class": 1, "output": None, "box": [2, 3, 4, 5, 7, 6]}
    assert Target.parse("voxels:1,2,3;4,5,6").describe() == {
        "kind": "voxels", "class": None, "output": None, "voxels": [[1, 2, 3], [4, 5, 6]]}
    roi = np.zeros(VOLUME, bool)
    roi[1:3, 1:3, 1:3] = True
    assert Target.from_mask(roi).describe()["pixels_in_region"] == 8


def test_image_targets_are_unchanged():
    box = Target.parse("box:1,2,5,4")
    assert box == Target.box(1, 2, 5, 4) and box.box_corners == (1, 2, 5, 4)
    expected = np.zeros((6, 8), bool)
    expected[2:4, 1:5] = True  # rows y0..y1, columns x0..x1
    np.testing.assert_array_equal(box.region((6, 8)), expected)
    pixels = Target.parse("pixels:7,0;0,5")
    assert pixels.pixel_list == ((7, 0), (0, 5)) and pixels.voxel_list is None
    region = pixels.region((6, 8))
    assert region.sum() == 2 and region[0, 7] and region[5, 0]
    assert box.describe() == {"kind": "box", "class": None, "output": None, "box": [1, 2, 5, 4]}
    assert pixels.describe() == {"kind": "pixels", "class": None, "output": None, "pixels": [[7, 0], [0, 5]]}
    with pytest.raises(OnnxplainError, match=r"^box \(0, 0, 9, 4\) reaches outside the 8x6 output$"):
        Target.box(0, 0, 9, 4).region((6, 8))
    with pytest.raises(OnnxplainError, match=r"^pixel \(8, 0\) is outside the 8x6 output$"):
        Target.pixels([(8, 0)]).region((6, 8))


def test_make_reference_takes_a_volume_segment_with_a_channel_axis():
    prediction = np.zeros(VOLUME, bool)
    segment = np.zeros((*VOLUME, 1), np.uint8)
    segment[2:4, 2:4, 2:4, 0] = 1
    reference = make_reference(prediction, segment=segment, target=Target.parse("voxels:2,2,2"),
                               spacing=(0.8, 1.2, 3.0))
    assert reference.source == "segment" and reference.mask.shape == VOLUME and reference.mask.sum() == 8
    assert reference.roi is not None and reference.roi.sum() == 1 and reference.spacing == (0.8, 1.2, 3.0)


def test_make_reference_refuses_an_empty_volume_region_in_voxels():
    with pytest.raises(OnnxplainError, match=r"region of interest \(mask\) covers no voxel of the output "
                                             r"\(12x10x8 voxels\); give a target that covers at least one voxel"):
        make_reference(np.ones(VOLUME, bool), target=Target.from_mask(np.zeros(VOLUME, bool)))
