"""3-D volumes in and out: NIfTI and NumPy volumes read with their geometry, maps written with it.

A map of a volume is only useful if it opens aligned with the volume in a viewer (ITK-SNAP, 3D
Slicer, FSL): it must carry the same voxel-to-world affine, the same sform and qform, and the same
voxel spacing. `read_volume` keeps all of that in a `Volume`, and `write_volume` writes any array of
the volume's shape with it. Axes stay in the file's own order (nibabel's i, j, k), never turned to
a viewer's orientation, so that a voxel index means the same voxel in the volume and in its maps.
"""

from __future__ import annotations

import base64
import gzip
import io as io_module
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxplain import io
from onnxplain.errors import OnnxplainError

VOLUME_SUFFIXES = (*io.NIFTI_SUFFIXES, ".npy")


@dataclass(frozen=True)
class Volume:
    """A 3-D volume and its geometry.

    Attributes
    ----------
    array : ndarray of float32, shape (I, J, K)
        The voxels, in the file's axis order.
    affine : ndarray of float64, shape (4, 4)
        Voxel index to world coordinates (millimetres): the file's best affine (sform, else qform).
    spacing : tuple of float
        Voxel size along each axis in millimetres (the header's pixdim).
    header : object, optional
        The NIfTI header read, copied into every map written (None for NumPy volumes).
    path : Path, optional
        Where it was read from.
    """

    array: np.ndarray = field(repr=False)
    affine: np.ndarray = field(repr=False)
    spacing: tuple[float, float, float]
    header: Any = field(default=None, repr=False, compare=False)
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxels along each axis."""
        return (int(self.array.shape[0]), int(self.array.shape[1]), int(self.array.shape[2]))


def is_volume_file(path: str | Path) -> bool:
    """Whether `path` names a file `read_volume` takes (``.nii``, ``.nii.gz``, ``.npy``)."""
    return str(path).lower().endswith(VOLUME_SUFFIXES)


def read_volume(path: str | Path, *, spacing: Sequence[float] | None = None) -> Volume:
    """Read a 3-D volume with its geometry.

    Parameters
    ----------
    path : str or Path
        A NIfTI file (``.nii``, ``.nii.gz``) or a NumPy array (``.npy``, shape (I, J, K)).
    spacing : tuple of float, optional
        Voxel size in millimetres for a NumPy volume, which has no header (1 mm when omitted);
        refused for NIfTI, whose header says it.

    Returns
    -------
    Volume

    Raises
    ------
    OnnxplainError
        For a missing or unreadable file, a volume that is not 3-D (a 4-D series, say), a spacing that
        is zero, negative or not finite, or values that are not finite.
    """
    path = Path(path)
    if not path.is_file():
        raise OnnxplainError(f"volume file not found: {path}")
    if not is_volume_file(path):
        raise OnnxplainError(f"{path} is not a volume file; give a NIfTI (.nii, .nii.gz) or NumPy (.npy) volume")
    if path.name.lower().endswith(".npy"):
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise OnnxplainError(f"{path} is not a NumPy array file ({error})") from error
        zooms = tuple(float(s) for s in (spacing or (1.0, 1.0, 1.0)))
        affine, header = np.diag([*zooms, 1.0]), None
    else:
        if spacing is not None:
            raise OnnxplainError(f"{path} is NIfTI: its header gives the voxel spacing; give spacing for .npy only")
        import nibabel  # only NIfTI files need it
        from nibabel.openers import ImageOpener

        quiet = logging.getLogger("nibabel.global")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # nibabel's fixes (zero pixdim set to 1) are judged below, not logged
        try:
            image = nibabel.load(path)
            array = np.asarray(image.get_fdata(dtype=np.float32))  # type: ignore[attr-defined]
            header_class: Any = type(image.header)  # NIfTI-1 or NIfTI-2
            with ImageOpener(str(path)) as handle:  # the header as stored, before nibabel's fixes
                stored = header_class.from_fileobj(handle, check=False)
        except Exception as error:  # nibabel raises its own types, and OSError/EOFError for truncated files
            raise OnnxplainError(f"{path} is not a NIfTI file that nibabel can read ({error})") from error
        finally:
            quiet.setLevel(level)
        header = image.header.copy()
        zooms = tuple(float(z) for z in stored["pixdim"][1:4])
        affine = np.asarray(image.affine, np.float64)  # type: ignore[attr-defined]
    if array.ndim == 4 and array.shape[3] == 1:  # a volume stored with a time axis of one
        array = array[..., 0]
    if array.ndim != 3:
        extra = "; give one 3-D volume (one time point or channel of a series)" if array.ndim > 3 else ""
        raise OnnxplainError(f"{path} is {array.ndim}-D, shaped {array.shape}, where a 3-D volume is expected{extra}")
    if len(zooms) != 3 or not all(math.isfinite(z) and z > 0 for z in zooms):
        raise OnnxplainError(f"{path} has a voxel spacing of {zooms} mm; every spacing must be positive: fix the "
                             "header's pixdim (or give spacing for .npy)")
    if not np.isfinite(array).all():
        raise OnnxplainError(f"{path} holds NaN or infinite values; a volume holds finite numbers")
    return Volume(array=np.asarray(array, np.float32), affine=affine, spacing=(zooms[0], zooms[1], zooms[2]),
                  header=header, path=path)


def write_volume(array: np.ndarray, like: Volume, path: str | Path) -> Path:
    """Write `array` (a map of `like`) as NIfTI with `like`'s affine, sform, qform and spacing.

    The file is written under a temporary name and renamed once whole.

    Parameters
    ----------
    array : ndarray, shape like.shape
        The values, one per voxel of `like`.
    like : Volume
        The volume the values belong to.
    path : str or Path
        A ``.nii`` or ``.nii.gz`` file name.

    Returns
    -------
    Path
    """
    import nibabel

    path = Path(path)
    values = np.asarray(array, np.float32)
    if values.shape != like.shape:
        raise OnnxplainError(f"a map of a volume shaped {like.shape} has that shape, got {values.shape}")
    if not io.is_nifti(path):
        raise OnnxplainError(f"{path}: a volume map is written as NIfTI; name it .nii or .nii.gz")
    if like.header is not None:
        header = like.header.copy()
        header.set_data_dtype(np.float32)
        image = nibabel.Nifti1Image(values, like.affine, header)
        # The header's own sform and qform, codes included, not rebuilt from the affine alone.
        image.set_sform(*like.header.get_sform(coded=True))
        image.set_qform(*like.header.get_qform(coded=True))
    else:
        image = nibabel.Nifti1Image(values, like.affine)
        image.header.set_xyzt_units("mm")
    image.header.set_zooms(like.spacing)
    image.header["scl_slope"], image.header["scl_inter"] = 1.0, 0.0  # values as written, not rescaled
    content = image.to_bytes()  # one .nii file's bytes; compressed here for .nii.gz
    with io.atomic_path(path) as staging:
        staging.write_bytes(gzip.compress(content, mtime=0) if path.name.lower().endswith(".gz") else content)
    return path


def geometry(volume: Volume) -> dict[str, Any]:
    """The volume's geometry as plain data for a record: enough for `write_like` to write aligned maps.

    Holds the affine, the spacing, the file and, for NIfTI, the header as stored (base64), whose
    sform, qform, codes and units every map then carries.
    """
    record: dict[str, Any] = {"file": None if volume.path is None else str(volume.path), "shape": list(volume.shape),
                              "spacing": list(volume.spacing), "affine": np.asarray(volume.affine).tolist()}
    if volume.header is not None:
        record["nifti_header"] = base64.b64encode(volume.header.binaryblock).decode("ascii")
    return record


def write_like(array: np.ndarray, record: dict[str, Any], path: str | Path) -> Path:
    """Write `array` as NIfTI with the geometry of a volume that `geometry` recorded (see `write_volume`)."""
    import nibabel

    header = None
    if "nifti_header" in record:
        block = base64.b64decode(record["nifti_header"])
        kind: Any = nibabel.Nifti2Header if len(block) == nibabel.Nifti2Header.sizeof_hdr else nibabel.Nifti1Header
        header = kind.from_fileobj(io_module.BytesIO(block), check=False)
    spacing = tuple(float(s) for s in record["spacing"])
    shape = tuple(record["shape"])
    if np.shape(array) != shape:
        raise OnnxplainError(f"a map of a volume shaped {shape} has that shape, got {np.shape(array)}")
    like = Volume(array=np.asarray(array, np.float32), affine=np.asarray(record["affine"], np.float64),
                  spacing=(spacing[0], spacing[1], spacing[2]), header=header)
    return write_volume(like.array, like, path)


INTENSITIES = ("none", "zscore", "percentile", "window")


def normalise_intensity(array: np.ndarray, mode: str = "none", *, percentiles: Sequence[float] = (0.5, 99.5),
                        window: Sequence[float] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Bring a volume's scanner values to what a medical model was trained on.

    The statistics come from the unperturbed volume, once: a perturbation then changes the voxels it
    touches and nothing else (which is what lets a patch-based model re-run only the patches it
    touches), where normalising each perturbed volume afresh would shift every voxel a little.

    Parameters
    ----------
    array : ndarray
        The volume (any shape; channels normalised together).
    mode : {'none', 'zscore', 'percentile', 'window'}
        ``'zscore'``: minus the mean, over the standard deviation (nnU-Net's MRI scheme);
        ``'percentile'``: clipped to the `percentiles` and scaled to [0, 1] (MONAI's
        ``ScaleIntensityRangePercentiles``); ``'window'``: a CT window, clipped to
        ``level ± width / 2`` and scaled to [0, 1]; ``'none'``: as stored.
    percentiles : (float, float)
        Lower and upper percentile of ``'percentile'``.
    window : (float, float), optional
        ``(level, width)`` of ``'window'``, in the volume's units (Hounsfield units for CT:
        (40, 400) is a soft-tissue window).

    Returns
    -------
    (ndarray of float32, dict)
        The normalised volume, and what was done, with the statistics used, for the record.

    Examples
    --------
    >>> volume = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    >>> normalise_intensity(volume, "window", window=(4, 4))[0].ravel().tolist()
    [0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    if mode not in INTENSITIES:
        raise OnnxplainError(f"intensity must be one of {', '.join(INTENSITIES)}; got {mode!r}",
                             parameters=("intensity",))
    values = np.asarray(array, np.float32)
    if mode == "none":
        return values, {"mode": mode}
    if mode == "zscore":
        mean, std = float(values.mean(dtype=np.float64)), float(values.std(dtype=np.float64))
        if std == 0:
            raise OnnxplainError("the volume is constant, so it has no z-score; choose another intensity mode",
                                 parameters=("intensity",))
        return ((values - mean) / std).astype(np.float32), {"mode": mode, "mean": mean, "std": std}
    if mode == "percentile":
        low_percent, high_percent = percentiles
        if not 0 <= low_percent < high_percent <= 100:
            raise OnnxplainError(f"percentiles must be 0 <= low < high <= 100, got {percentiles}",
                                 parameters=("percentiles",))
        low, high = (float(v) for v in np.percentile(values, [low_percent, high_percent]))
        record = {"mode": mode, "percentiles": [low_percent, high_percent], "low": low, "high": high}
    else:
        if window is None or not window[1] > 0:
            raise OnnxplainError(f"a window is a level and a positive width, got {window}", parameters=("window",))
        low, high = window[0] - window[1] / 2, window[0] + window[1] / 2
        record = {"mode": mode, "level": float(window[0]), "width": float(window[1]), "low": low, "high": high}
    if high <= low:
        raise OnnxplainError(f"the volume's values span nothing between {low} and {high}; choose another intensity "
                             "mode", parameters=("intensity",))
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32), record
