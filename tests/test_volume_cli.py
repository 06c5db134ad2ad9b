"""Volumes through the command line: NIfTI in, every map out as NIfTI aligned with it, and bad volumes
refused in one line with nothing written."""

import gzip
import json
import math

import nibabel
import numpy as np
import pytest
from scipy.spatial.distance import directed_hausdorff
from test_cli import assert_one_line_error, run

from onnxplain import data
from onnxplain.model import OnnxModel
from onnxplain.perturbation.occlusion import BoxMasks
from onnxplain.testnet3d import make_volume

MODEL = data.testnet3d_model_path()


def oblique_affine():
    """Two rotations, anisotropic voxels (0.8 x 1.2 x 3.0 mm) and an offset: nothing a viewer can assume."""
    turn_z, turn_x = (math.cos(0.3), math.sin(0.3)), (math.cos(-0.2), math.sin(-0.2))
    rotation = (np.array([[turn_z[0], -turn_z[1], 0], [turn_z[1], turn_z[0], 0], [0, 0, 1]])
                @ np.array([[1, 0, 0], [0, turn_x[0], -turn_x[1]], [0, turn_x[1], turn_x[0]]]))
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 1.2, 3.0])
    affine[:3, 3] = [12.5, -20.0, 7.25]
    return affine


def save_nifti(array, path, affine=None):
    image = nibabel.Nifti1Image(np.asarray(array, np.float32), oblique_affine() if affine is None else affine)
    image.set_sform(image.affine, code=2)  # aligned to another scan
    image.set_qform(image.affine, code=1)  # scanner
    nibabel.save(image, path)
    return path


@pytest.fixture
def sample():
    return make_volume(5, 0)


def test_every_map_comes_out_with_the_volume_affine_header_and_shape(runner, sample, tmp_path):
    volume = save_nifti(sample.image, tmp_path / "scan.nii.gz")
    roi = save_nifti(sample.segment[:, :, :], tmp_path / "roi.nii.gz")
    out = tmp_path / "out"
    result = run(runner, "explain", MODEL, volume, "--method", "occlusion", "-p", "window=16", "-p", "stride=16",
                 "--target", f"mask:{roi}", "--out", out)
    assert result.exit_code == 0, result.output
    assert "patch passes run" in result.output
    written = sorted(p.name for p in out.glob("*.nii.gz"))
    assert written == ["region.nii.gz", "saliency.nii.gz", "segment.nii.gz"]
    source = nibabel.load(volume)
    for name in written:
        mapped = nibabel.load(out / name)
        assert mapped.shape == source.shape == (48, 48, 48)
        np.testing.assert_allclose(mapped.affine, source.affine, atol=1e-6)
        for matrix in ("get_sform", "get_qform"):
            mine, theirs = getattr(mapped.header, matrix)(coded=True), getattr(source.header, matrix)(coded=True)
            np.testing.assert_allclose(mine[0], theirs[0], atol=1e-6)
            assert int(mine[1]) == int(theirs[1])
        np.testing.assert_allclose(mapped.header.get_zooms(), (0.8, 1.2, 3.0), atol=1e-6)
    np.testing.assert_array_equal(nibabel.load(out / "saliency.nii.gz").get_fdata(dtype=np.float32),
                                  np.load(out / "saliency.npy"))
    record = json.loads((out / "explanation.json").read_text())
    assert record["volume"]["spacing"] == pytest.approx([0.8, 1.2, 3.0]) and record["reference"]["spacing"]
    assert {"summary.png", "slices.png", "mosaic.png"} <= {p.name for p in out.glob("*.png")}


def test_hausdorff_distances_of_a_volume_are_in_millimetres(runner, sample, tmp_path):
    volume = save_nifti(sample.image, tmp_path / "scan.nii.gz")
    out = tmp_path / "out"
    result = run(runner, "explain", MODEL, volume, "--method", "occlusion", "-p", "window=24", "-p", "stride=24",
                 "--score", "hausdorff", "--out", out)
    assert result.exit_code == 0, result.output
    distances = np.load(out / "distances.npy")
    # Each box's distance again, independently: scipy's Hausdorff between voxel centres in millimetres.
    model = OnnxModel(MODEL, device="cpu")
    spacing = np.array([0.8, 1.2, 3.0])
    reference = model.predict(sample.image[None, ..., None]).mask[0]
    boxes = BoxMasks((48, 48, 48), window=24, stride=24)
    hidden = sample.image[None] * boxes.batch(0, len(boxes)).masks
    for distance, mask in zip(distances, model.predict(hidden[..., None]).mask, strict=True):
        a, b = np.argwhere(reference) * spacing, np.argwhere(mask) * spacing
        expected = max(directed_hausdorff(a, b)[0], directed_hausdorff(b, a)[0])
        assert distance == pytest.approx(expected, abs=1e-5)
    assert distances.max() > 0


def nothing_written(out):
    return not out.exists()


def test_a_4d_volume_is_refused(runner, tmp_path):
    series = save_nifti(np.zeros((48, 48, 48, 2)), tmp_path / "series.nii.gz")
    out = tmp_path / "out"
    assert_one_line_error(run(runner, "explain", MODEL, series, "--out", out),
                          "is 4-D, shaped (48, 48, 48, 2), where a 3-D volume is expected", "one 3-D volume")
    assert nothing_written(out)


def test_a_zero_spacing_is_refused(runner, sample, tmp_path):
    path = save_nifti(sample.image, tmp_path / "flat.nii", affine=np.eye(4))
    content = bytearray(path.read_bytes())
    content[84:88] = np.float32(0.0).tobytes()  # pixdim[2] (nibabel would write it from the affine, and read it as 1)
    path.write_bytes(bytes(content))
    out = tmp_path / "out"
    assert_one_line_error(run(runner, "explain", MODEL, path, "--out", out),
                          "voxel spacing of (1.0, 0.0, 1.0) mm", "fix the header's pixdim")
    assert nothing_written(out)


def test_a_volume_smaller_than_the_patch_is_refused(runner, tmp_path):
    small = save_nifti(np.zeros((32, 48, 48)), tmp_path / "small.nii.gz")
    out = tmp_path / "out"
    assert_one_line_error(run(runner, "explain", MODEL, small, "--out", out),
                          "32x48x48 voxels, smaller than the model's patch of 48x48x48", "pad the volume")
    assert nothing_written(out)


def test_a_mismatched_roi_volume_is_refused(runner, sample, tmp_path):
    volume = save_nifti(sample.image, tmp_path / "scan.nii.gz")
    roi = save_nifti(np.ones((40, 48, 48)), tmp_path / "roi.nii.gz")
    out = tmp_path / "out"
    assert_one_line_error(run(runner, "explain", MODEL, volume, "--target", f"mask:{roi}", "--out", out),
                          "region-of-interest volume is shaped (40, 48, 48)", "(48, 48, 48)")
    assert nothing_written(out)


def test_a_corrupt_nifti_is_refused(runner, sample, tmp_path):
    good = save_nifti(sample.image, tmp_path / "scan.nii.gz")
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(gzip.compress(gzip.decompress(good.read_bytes())[:2000]))  # the header and a little data
    out = tmp_path / "out"
    assert_one_line_error(run(runner, "explain", MODEL, corrupt, "--out", out),
                          "is not a NIfTI file that nibabel can read")
    assert nothing_written(out)
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[:500])  # a gzip stream cut short
    assert_one_line_error(run(runner, "explain", MODEL, truncated, "--out", out),
                          "is not a NIfTI file that nibabel can read")
    assert nothing_written(out)


def test_volume_options_are_refused_for_a_2d_model(runner, brightness, square_png, tmp_path):
    assert_one_line_error(run(runner, "explain", brightness(), square_png, "--intensity", "zscore",
                              "--out", tmp_path / "out"), "options of volumes")
