"""What to explain (a target) and what perturbed outputs are compared with (a reference)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onnxplain.errors import OnnxplainError

TARGET_KINDS = ("class", "mask", "box", "pixels")


@dataclass(frozen=True)
class Target:
    """The part of the segmentation to explain.

    - ``class``: the whole class (the default): every pixel the reference segments;
    - ``mask``: a region of interest given as a boolean mask of the output's shape;
    - ``box``: a rectangle ``(x0, y0, x1, y1)``, x1 and y1 excluded;
    - ``pixels``: a list of ``(x, y)`` pixels.

    A target also names the class (the output channel) and the model output it is about, so one
    loaded model explains every class: ``Target.box(0, 0, 8, 8).of_class(3)``. When they are
    omitted, the model's own defaults apply (class 0 of the first output).

    Use the constructors `whole_class`, `from_mask`, `box`, `pixels`, or `parse` for the
    command-line form.
    """

    kind: str = "class"
    mask: np.ndarray | None = field(default=None, repr=False)
    box_corners: tuple[int, int, int, int] | None = None
    pixel_list: tuple[tuple[int, int], ...] | None = None
    class_index: int | None = None
    output: int | str | None = None

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
        """Explain the pixels where the boolean `mask` is true."""
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
    def pixels(cls, points: list[tuple[int, int]]) -> Target:
        """Explain the listed ``(x, y)`` pixels."""
        chosen = tuple((int(x), int(y)) for x, y in points)
        if not chosen:
            raise OnnxplainError("a pixel target needs at least one (x, y) pixel")
        return cls("pixels", pixel_list=chosen)

    @classmethod
    def parse(cls, spec: str) -> Target:
        """Read the command-line form of a target.

        Parameters
        ----------
        spec : str
            ``class``, ``mask:PATH`` (an image whose non-zero pixels are the region),
            ``box:X0,Y0,X1,Y1`` or ``pixels:X,Y;X,Y;...``.

        Returns
        -------
        Target

        Examples
        --------
        >>> Target.parse("box:10,20,50,60").box_corners
        (10, 20, 50, 60)
        >>> Target.parse("pixels:3,4;5,6").pixel_list
        ((3, 4), (5, 6))
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
            if kind == "pixels":
                pairs = [p.split(",") for p in argument.split(";") if p.strip()]
                return cls.pixels([(int(x), int(y)) for x, y in pairs])
        except ValueError as error:
            if isinstance(error, OnnxplainError):
                raise
            raise OnnxplainError(f"cannot read target {spec!r}: {error}") from error
        raise OnnxplainError(
            f"cannot read target {spec!r}; use class, mask:PATH, box:X0,Y0,X1,Y1 or pixels:X,Y;X,Y"
        )

    def region(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """The region of interest as a boolean mask of the output `shape`, None for a whole class."""
        if self.kind == "class":
            return None
        if self.mask is not None:
            if self.mask.shape != tuple(shape):
                raise OnnxplainError(
                    f"the region-of-interest mask is shaped {self.mask.shape} but the model output is shaped "
                    f"{tuple(shape)}; give a mask of the output's size",
                    parameters=("target",),
                )
            return self.mask
        if len(shape) != 2:
            raise OnnxplainError(f"{self.kind} targets are 2-D; give a mask target for an output shaped {shape}",
                                 parameters=("target",))
        height, width = shape
        region = np.zeros(shape, dtype=bool)
        if self.box_corners is not None:
            x0, y0, x1, y1 = self.box_corners
            if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                raise OnnxplainError(f"box {self.box_corners} reaches outside the {width}x{height} output")
            region[y0:y1, x0:x1] = True
            return region
        for x, y in self.pixel_list or ():
            if not (0 <= x < width and 0 <= y < height):
                raise OnnxplainError(f"pixel ({x}, {y}) is outside the {width}x{height} output")
            region[y, x] = True
        return region

    def describe(self) -> dict:
        """The target as plain data for records."""
        described: dict = {"kind": self.kind, "class": self.class_index, "output": self.output}
        if self.box_corners is not None:
            described["box"] = list(self.box_corners)
        if self.pixel_list is not None:
            described["pixels"] = [list(p) for p in self.pixel_list]
        if self.mask is not None:
            described["pixels_in_region"] = int(self.mask.sum())
        return described


@dataclass(frozen=True)
class Reference:
    """What perturbed outputs are compared with.

    Attributes
    ----------
    mask : ndarray of bool, shape (H', W')
        The reference segment: a ground truth given by the user, or the model's own prediction on
        the unperturbed image.
    roi : ndarray of bool or None
        Region of interest from the target; None when the target is the whole class.
    source : {'segment', 'prediction'}
        Where `mask` came from.
    """

    mask: np.ndarray
    roi: np.ndarray | None = None
    source: str = "prediction"

    @property
    def shape(self) -> tuple[int, ...]:
        return self.mask.shape

    @property
    def region(self) -> np.ndarray:
        """Pixels whose class probability matters: the region of interest, else the reference mask."""
        return self.roi if self.roi is not None else self.mask

    def restrict(self, masks: np.ndarray) -> np.ndarray:
        """`masks` (n, H', W') limited to the region of interest, when there is one."""
        return masks if self.roi is None else masks & self.roi

    def restricted_mask(self) -> np.ndarray:
        """The reference mask limited to the region of interest, when there is one."""
        return self.mask if self.roi is None else self.mask & self.roi


def make_reference(
    prediction: np.ndarray, *, segment: np.ndarray | None = None, target: Target | None = None
) -> Reference:
    """Build the reference from the unperturbed prediction, an optional ground truth and a target.

    Parameters
    ----------
    prediction : ndarray of bool, shape (H', W')
        The model's mask for the unperturbed image.
    segment : ndarray, optional
        Ground-truth segment (non-zero = in the segment); replaces `prediction` as the reference.
    target : Target, optional
        What to explain; the whole class when omitted.

    Returns
    -------
    Reference
    """
    shape = prediction.shape
    if segment is not None:
        segment = np.asarray(segment)
        if segment.ndim == 3 and segment.shape[2] == 1:
            segment = segment[:, :, 0]
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
        size = "x".join(map(str, shape[::-1]))
        raise OnnxplainError(f"the region of interest ({target.kind}) covers no pixel of the {size} output; "
                             "give a target that covers at least one pixel", parameters=("target",))
    return Reference(mask=mask, roi=roi, source=source)
