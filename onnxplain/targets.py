"""What to explain (a target) and what perturbed outputs are compared with (a reference)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onnxplain.errors import OnnxplainError

TARGET_KINDS = ("class", "mask", "box", "pixels", "voxels")
# The command-line forms that fit an image and a volume, for messages that say what to give instead.
IMAGE_FORMS = {"box": "box:X0,Y0,X1,Y1 (x = column, y = row, ends excluded)", "points": "pixels:X,Y;X,Y"}
VOLUME_FORMS = {"box": "box:I0,J0,K0,I1,J1,K1 (voxel indices, ends excluded)", "points": "voxels:I,J,K;I,J,K"}


@dataclass(frozen=True)
class Target:
    """The part of the segmentation to explain.

    - ``class``: the whole class (the default): every pixel (voxel) the reference segments;
    - ``mask``: a region of interest given as a boolean mask (an ROI volume) of the output's shape;
    - ``box``: an image's rectangle ``(x0, y0, x1, y1)`` (x = column, y = row), or a volume's box
      ``(i0, j0, k0, i1, j1, k1)`` in the volume's array-axis order (voxel indices as NIfTI viewers
      show them); the ends are excluded;
    - ``pixels``: a list of an image's ``(x, y)`` pixels;
    - ``voxels``: a list of a volume's ``(i, j, k)`` voxels.

    A target also names the class (the output channel) and the model output it is about, so one
    loaded model explains every class: ``Target.box(0, 0, 8, 8).of_class(3)``. When they are
    omitted, the model's own defaults apply (class 0 of the first output).

    Use the constructors `whole_class`, `from_mask`, `box`, `voxel_box`, `pixels`, `voxels`, or
    `parse` for the command-line form.
    """

    kind: str = "class"
    mask: np.ndarray | None = field(default=None, repr=False)
    box_corners: tuple[int, ...] | None = None
    pixel_list: tuple[tuple[int, int], ...] | None = None
    class_index: int | None = None
    output: int | str | None = None
    voxel_list: tuple[tuple[int, int, int], ...] | None = None

    def of_class(self, class_index: int | None, output: int | str | None = None) -> Target:
        """The same region, for class `class_index` of model output `output` (None: the model's default)."""
        if class_index is not None and class_index < 0:
            raise OnnxplainError(f"a class index is non-negative, got {class_index}", parameters=("class_index",))
        return dataclasses.replace(self, class_index=class_index, output=output)

    @classmethod
    def whole_class(cls, class_index: int | None = None) -> Target:
        """Explain every pixel of the class."""
        return cls("class", class_index=class_index)

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> Target:
        """Explain the pixels (voxels) where the boolean `mask` is true."""
        mask = np.asarray(mask)
        if mask.ndim < 2:
            raise OnnxplainError(f"a region-of-interest mask has one axis per spatial axis, got shape {mask.shape}")
        return cls("mask", mask=mask.astype(bool))

    @classmethod
    def box(cls, x0: int, y0: int, x1: int, y1: int) -> Target:
        """Explain the rectangle of columns x0..x1 and rows y0..y1 (x1, y1 excluded)."""
        if not (x0 < x1 and y0 < y1):
            raise OnnxplainError(f"a box needs x0 < x1 and y0 < y1, got {(x0, y0, x1, y1)}")
        return cls("box", box_corners=(int(x0), int(y0), int(x1), int(y1)))

    @classmethod
    def voxel_box(cls, start: tuple[int, int, int], stop: tuple[int, int, int]) -> Target:
        """Explain the voxels ``[i0:i1, j0:j1, k0:k1]`` of a volume, from ``start = (i0, j0, k0)`` to
        ``stop = (i1, j1, k1)`` (excluded), in the volume's array-axis order."""
        if len(start) != 3 or len(stop) != 3:
            raise OnnxplainError(f"a volume's box has 3 start and 3 stop indices (i, j, k), got {start} and {stop}")
        if not all(a < b for a, b in zip(start, stop, strict=True)):
            raise OnnxplainError(f"a volume's box needs i0 < i1, j0 < j1 and k0 < k1, got {tuple(start) + tuple(stop)}")
        return cls("box", box_corners=tuple(int(v) for v in (*start, *stop)))

    @classmethod
    def pixels(cls, points: list[tuple[int, int]]) -> Target:
        """Explain the listed ``(x, y)`` pixels."""
        chosen = tuple((int(x), int(y)) for x, y in points)
        if not chosen:
            raise OnnxplainError("a pixel target needs at least one (x, y) pixel")
        return cls("pixels", pixel_list=chosen)

    @classmethod
    def voxels(cls, points: list[tuple[int, int, int]]) -> Target:
        """Explain the listed ``(i, j, k)`` voxels of a volume."""
        chosen = tuple((int(i), int(j), int(k)) for i, j, k in points)
        if not chosen:
            raise OnnxplainError("a voxel target needs at least one (i, j, k) voxel")
        return cls("voxels", voxel_list=chosen)

    @classmethod
    def parse(cls, spec: str) -> Target:
        """Read the command-line form of a target.

        Parameters
        ----------
        spec : str
            One of

            - ``class``;
            - ``mask:PATH``: an image whose non-zero pixels are the region;
            - ``box:X0,Y0,X1,Y1``: an image's rectangle (x = column, y = row, ends excluded);
            - ``box:I0,J0,K0,I1,J1,K1``: a volume's box, in its array-axis order (ends excluded);
            - ``pixels:X,Y;X,Y;...``: an image's pixels;
            - ``voxels:I,J,K;I,J,K;...``: a volume's voxels.

        Returns
        -------
        Target

        Examples
        --------
        >>> Target.parse("box:10,20,50,60").box_corners
        (10, 20, 50, 60)
        >>> Target.parse("pixels:3,4;5,6").pixel_list
        ((3, 4), (5, 6))
        >>> Target.parse("box:0,4,8,16,20,24").box_corners
        (0, 4, 8, 16, 20, 24)
        >>> Target.parse("voxels:1,2,3").voxel_list
        ((1, 2, 3),)
        """
        kind, _, argument = spec.partition(":")
        try:
            if kind == "class" and not argument:
                return cls.whole_class()
            if kind == "mask" and argument:
                from onnxplain.io import read_mask  # io reads files; only this form needs it

                return cls.from_mask(read_mask(Path(argument)))
            if kind == "box":
                numbers = [int(v) for v in argument.split(",")]
                if len(numbers) == 4:
                    return cls.box(*numbers)
                if len(numbers) == 6:
                    return cls.voxel_box((numbers[0], numbers[1], numbers[2]), (numbers[3], numbers[4], numbers[5]))
            if kind in ("pixels", "voxels"):
                size = 2 if kind == "pixels" else 3
                points = [[int(v) for v in p.split(",")] for p in argument.split(";") if p.strip()]
                wrong = [p for p in points if len(p) != size]
                if wrong:
                    form = IMAGE_FORMS["points"] if kind == "pixels" else VOLUME_FORMS["points"]
                    raise OnnxplainError(f"cannot read target {spec!r}: {kind} take {size} numbers each, got "
                                         f"{','.join(map(str, wrong[0]))}; give {form}", parameters=("target",))
                if kind == "pixels":
                    return cls.pixels([(x, y) for x, y in points])
                return cls.voxels([(i, j, k) for i, j, k in points])
        except ValueError as error:
            if isinstance(error, OnnxplainError):
                raise
            raise OnnxplainError(f"cannot read target {spec!r}: {error}") from error
        raise OnnxplainError(
            f"cannot read target {spec!r}; use class, mask:PATH, box:X0,Y0,X1,Y1 or pixels:X,Y;X,Y "
            "(for a volume: box:I0,J0,K0,I1,J1,K1 or voxels:I,J,K;I,J,K)"
        )

    def region(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """The region of interest as a boolean mask of the output `shape`, None for a whole class.

        Raises
        ------
        OnnxplainError
            For a mask of another shape, a box or points made for another number of axes (an
            image's box for a volume, say), or a box or points outside the output.
        """
        if self.kind == "class":
            return None
        shape = tuple(shape)
        if self.mask is not None:
            if self.mask.shape != shape:
                what = "volume" if len(shape) == 3 else "mask"
                raise OnnxplainError(
                    f"the region-of-interest {what} is shaped {self.mask.shape} but the model output is shaped "
                    f"{shape}; give a region-of-interest {what} of the output's shape",
                    parameters=("target",),
                )
            return self.mask
        self._check_axes(shape)
        region = np.zeros(shape, dtype=bool)
        if self.box_corners is not None:
            half = len(self.box_corners) // 2
            start, stop = self.box_corners[:half], self.box_corners[half:]
            if half == 2:  # an image's box is (x, y) = (column, row): reversed, it is in array order
                start, stop = start[::-1], stop[::-1]
            if min(start) < 0 or any(end > side for end, side in zip(stop, shape, strict=True)):
                raise OnnxplainError(f"box {self.box_corners} reaches outside {_output_size(shape)}",
                                     parameters=("target",))
            region[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))] = True
            return region
        word = "pixel" if self.kind == "pixels" else "voxel"
        for point in self.pixel_list or self.voxel_list or ():
            index = point[::-1] if self.kind == "pixels" else point  # (x, y) is (column, row)
            if not all(0 <= p < side for p, side in zip(index, shape, strict=True)):
                raise OnnxplainError(f"{word} {point} is outside {_output_size(shape)}", parameters=("target",))
            region[index] = True
        return region

    def _check_axes(self, shape: tuple[int, ...]) -> None:
        """Refuse a box or points made for an image when the output is a volume, and the reverse."""
        axes = 3 if self.kind == "voxels" or len(self.box_corners or ()) == 6 else 2
        if len(shape) == axes:
            return
        if len(shape) not in (2, 3):
            raise OnnxplainError(f"{self.kind} targets fit 2-D images and 3-D volumes; give a mask target for an "
                                 f"output shaped {shape}", parameters=("target",))
        made_for = {
            ("box", 2): f"box {self.box_corners} is an image's (x0, y0, x1, y1)",
            ("box", 3): f"box {self.box_corners} is a volume's (i0, j0, k0, i1, j1, k1)",
            ("pixels", 2): "pixel targets (x, y) are for images",
            ("voxels", 3): "voxel targets (i, j, k) are for volumes",
        }[self.kind, axes]
        output, forms = ("an image", IMAGE_FORMS) if len(shape) == 2 else ("a volume", VOLUME_FORMS)
        form = forms["box" if self.kind == "box" else "points"]
        raise OnnxplainError(f"{made_for} but the model output is {output} shaped {shape}; give {form}",
                             parameters=("target",))

    def describe(self) -> dict:
        """The target as plain data for records."""
        described: dict = {"kind": self.kind, "class": self.class_index, "output": self.output}
        if self.box_corners is not None:
            described["box"] = list(self.box_corners)
        if self.pixel_list is not None:
            described["pixels"] = [list(p) for p in self.pixel_list]
        if self.voxel_list is not None:
            described["voxels"] = [list(p) for p in self.voxel_list]
        if self.mask is not None:
            described["pixels_in_region"] = int(self.mask.sum())
        return described


def _output_size(shape: tuple[int, ...]) -> str:
    """The output named by its size: "the WxH output" for an image (as boxes are given, columns
    first), "the output (IxJxK voxels)" for a volume (in array-axis order, as its boxes are given)."""
    if len(shape) == 2:
        return f"the {shape[1]}x{shape[0]} output"
    return f"the output ({'x'.join(map(str, shape))} voxels)"


def checked_spacing(spacing: Sequence[float] | np.ndarray | None, ndim: int) -> tuple[float, ...]:
    """The size of a pixel (voxel) along each of `ndim` axes: `spacing` checked, or ones when it is None.

    Raises
    ------
    OnnxplainError
        When `spacing` does not give one positive, finite number per axis.

    Examples
    --------
    >>> checked_spacing(None, 3)
    (1.0, 1.0, 1.0)
    >>> checked_spacing([0.8, 1.2, 3], 3)
    (0.8, 1.2, 3.0)
    """
    if spacing is None:
        return (1.0,) * ndim
    try:
        values = tuple(float(s) for s in np.asarray(spacing, dtype=np.float64).ravel())
    except (TypeError, ValueError):
        values = ()  # not numbers: refused below like any other bad spacing
    if len(values) != ndim or not all(math.isfinite(s) and s > 0 for s in values):
        raise OnnxplainError(
            f"spacing {spacing!r} does not give one positive, finite size per axis of the {ndim}-D output; "
            f"give {ndim} sizes, such as {(1.0,) * ndim} (millimetres for a NIfTI volume)",
            parameters=("spacing",),
        )
    return values


@dataclass(frozen=True)
class Reference:
    """What perturbed outputs are compared with.

    Attributes
    ----------
    mask : ndarray of bool, shape (H', W') or (I, J, K)
        The reference segment: a ground truth given by the user, or the model's own prediction on
        the unperturbed image.
    roi : ndarray of bool or None
        Region of interest from the target; None when the target is the whole class.
    source : {'segment', 'prediction'}
        Where `mask` came from.
    spacing : tuple of float or None
        The size of a pixel (voxel) along each axis of `mask`, in the unit distance scores report
        (millimetres for a NIfTI volume); None means 1 per axis, i.e. distances in pixels. Checked,
        and stored as a tuple, on construction.
    """

    mask: np.ndarray
    roi: np.ndarray | None = None
    source: str = "prediction"
    spacing: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.spacing is not None:
            object.__setattr__(self, "spacing", checked_spacing(self.spacing, np.ndim(self.mask)))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.mask.shape

    @property
    def spacing_per_axis(self) -> tuple[float, ...]:
        """`spacing`, or ones (distances in pixels) when it is None: one float per axis of `mask`."""
        return checked_spacing(self.spacing, self.mask.ndim)

    @property
    def region(self) -> np.ndarray:
        """Pixels whose class probability matters: the region of interest, else the reference mask."""
        return self.roi if self.roi is not None else self.mask

    def restrict(self, masks: np.ndarray) -> np.ndarray:
        """`masks` (n, *shape) limited to the region of interest, when there is one."""
        return masks if self.roi is None else masks & self.roi

    def restricted_mask(self) -> np.ndarray:
        """The reference mask limited to the region of interest, when there is one."""
        return self.mask if self.roi is None else self.mask & self.roi


def make_reference(
    prediction: np.ndarray,
    *,
    segment: np.ndarray | None = None,
    target: Target | None = None,
    spacing: Sequence[float] | None = None,
) -> Reference:
    """Build the reference from the unperturbed prediction, an optional ground truth and a target.

    Parameters
    ----------
    prediction : ndarray of bool, shape (H', W') or (I, J, K)
        The model's mask for the unperturbed image or volume.
    segment : ndarray, optional
        Ground-truth segment (non-zero = in the segment); replaces `prediction` as the reference.
        A trailing channel axis of length 1 is dropped.
    target : Target, optional
        What to explain; the whole class when omitted.
    spacing : sequence of float, optional
        The size of a pixel (voxel) along each axis of `prediction`, such as a NIfTI volume's
        spacing in millimetres: distance scores report in its unit. None: 1 per axis (pixels).

    Returns
    -------
    Reference

    Raises
    ------
    OnnxplainError
        For a segment of another shape, a target that does not fit the output, or a spacing that
        does not give one positive, finite size per axis.
    """
    shape = prediction.shape
    spacing = checked_spacing(spacing, prediction.ndim) if spacing is not None else None
    if segment is not None:
        segment = np.asarray(segment)
        if segment.ndim == len(shape) + 1 and segment.shape[-1] == 1:
            segment = segment[..., 0]
        if segment.shape != shape:
            raise OnnxplainError(
                f"the segment is shaped {segment.shape} but the model output is {shape}; "
                "give a segment of the output's size",
                parameters=("segment",),
            )
        mask, source = segment.astype(bool), "segment"
    else:
        mask, source = prediction, "prediction"
    target = target or Target.whole_class()
    roi = target.region(shape)
    if roi is not None and not roi.any():
        word = "pixel" if len(shape) == 2 else "voxel"
        raise OnnxplainError(f"the region of interest ({target.kind}) covers no {word} of {_output_size(shape)}; "
                             f"give a target that covers at least one {word}", parameters=("target",))
    return Reference(mask=mask, roi=roi, source=source, spacing=spacing)
