"""3-D volumes in and out: NIfTI geometry (affine, sform, qform, spacing) kept from the volume to its maps."""

import gzip

import nibabel
import numpy as np
import pytest

from onnxplain.errors import OnnxplainError
from onnxplain.volumes import read_volume, write_volume


def oblique_affine(spacing=(0.8, 1.2, 3.0)):
    """A voxel-to-world affine rotated about two axes, with anisotropic voxels and an offset."""
    a, b = np.deg2rad(20), np.deg2rad(-35)
    about_z = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    about_x = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = about_z @ about_x @ np.diag(spacing)
    affine[:3, 3] = (-91.5, 12.25, 40.0)
    return affine


@pytest.fixture
def oblique(tmp_path):
    rng = np.random.default_rng(0)
    voxels = rng.normal(size=(20, 16, 12)).astype(np.float32)
    image = nibabel.Nifti1Image(voxels, oblique_affine())
    image.set_qform(oblique_affine(), code=1)  # scanner coordinates
    image.set_sform(oblique_affine(), code=2)  # aligned to another scan
    path = tmp_path / "scan.nii.gz"
    nibabel.save(image, path)
    return path, voxels


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_a_map_carries_the_volumes_oblique_anisotropic_geometry(oblique, tmp_path, suffix):
    path, voxels = oblique
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.array, voxels)
    assert volume.spacing == pytest.approx((0.8, 1.2, 3.0))
    np.testing.assert_allclose(volume.affine, oblique_affine(), atol=1e-5)
    saliency = np.arange(volume.array.size, dtype=np.float32).reshape(volume.shape)
    written = nibabel.load(write_volume(saliency, volume, tmp_path / f"saliency{suffix}"))
    source = nibabel.load(path)
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-6)
    np.testing.assert_allclose(written.header.get_sform(), source.header.get_sform(), atol=1e-6)
    np.testing.assert_allclose(written.header.get_qform(), source.header.get_qform(), atol=1e-6)
    assert int(written.header["sform_code"]) == 2 and int(written.header["qform_code"]) == 1
    assert written.header.get_zooms() == pytest.approx(source.header.get_zooms())
    np.testing.assert_array_equal(written.get_fdata(), saliency)  # stored as written, not rescaled


def test_a_numpy_volume_gets_its_spacing_as_its_affine(tmp_path):
    path = tmp_path / "volume.npy"
    np.save(path, np.ones((8, 9, 10), np.float32))
    volume = read_volume(path, spacing=(2.0, 2.0, 5.0))
    np.testing.assert_array_equal(volume.affine, np.diag([2.0, 2.0, 5.0, 1.0]))
    written = nibabel.load(write_volume(np.zeros(volume.shape), volume, tmp_path / "map.nii.gz"))
    assert written.header.get_zooms() == (2.0, 2.0, 5.0) and written.header.get_xyzt_units()[0] == "mm"


def nifti(tmp_path, voxels, zooms=None, name="bad.nii.gz"):
    image = nibabel.Nifti1Image(voxels, np.eye(4))
    if zooms is not None:
        image.header.set_zooms(zooms)
    path = tmp_path / name
    nibabel.save(image, path)
    return path


@pytest.mark.parametrize("case,fragment", [
    ("4-D series", "is 4-D, shaped (6, 6, 6, 3), where a 3-D volume is expected; give one 3-D volume"),
    ("zero spacing", "has a voxel spacing of (1.0, 0.0, 1.0) mm; every spacing must be positive"),
    ("corrupt .nii.gz", "is not a NIfTI file that nibabel can read"),
    ("missing file", "volume file not found"),
    ("not a volume", "is not a volume file; give a NIfTI (.nii, .nii.gz) or NumPy (.npy) volume"),
    ("NaN voxels", "holds NaN or infinite values"),
])
def test_bad_volumes_are_one_clear_line(tmp_path, case, fragment):
    if case == "4-D series":
        path = nifti(tmp_path, np.zeros((6, 6, 6, 3), np.float32))
    elif case == "zero spacing":
        path = nifti(tmp_path, np.zeros((6, 6, 6), np.float32), zooms=(1.0, 0.0, 1.0))
    elif case == "corrupt .nii.gz":
        whole = nifti(tmp_path, np.zeros((16, 16, 16), np.float32)).read_bytes()
        path = tmp_path / "cut.nii.gz"
        path.write_bytes(whole[: len(whole) // 2])
    elif case == "missing file":
        path = tmp_path / "nowhere.nii.gz"
    elif case == "not a volume":
        path = tmp_path / "scan.png"
        path.write_bytes(b"png")
    else:
        voxels = np.zeros((6, 6, 6), np.float32)
        voxels[1, 2, 3] = np.nan
        path = nifti(tmp_path, voxels)
    with pytest.raises(OnnxplainError, match=fragment.replace("(", r"\(").replace(")", r"\)")) as error:
        read_volume(path)
    assert "\n" not in str(error.value)


def test_a_map_of_another_shape_or_format_is_refused_and_nothing_is_written(oblique, tmp_path):
    volume = read_volume(oblique[0])
    with pytest.raises(OnnxplainError, match=r"a map of a volume shaped \(20, 16, 12\) has that shape"):
        write_volume(np.zeros((20, 16)), volume, tmp_path / "map.nii.gz")
    with pytest.raises(OnnxplainError, match="name it .nii or .nii.gz"):
        write_volume(np.zeros(volume.shape), volume, tmp_path / "map.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nii.gz"]


def test_a_compressed_map_is_plain_gzip(oblique, tmp_path):
    volume = read_volume(oblique[0])
    path = write_volume(np.ones(volume.shape), volume, tmp_path / "map.nii.gz")
    assert gzip.decompress(path.read_bytes())[344:348] == b"n+1\x00"  # a single-file NIfTI-1 inside
