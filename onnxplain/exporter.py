"""The exporter interface: turn a model of some framework into an ONNX file onnxplain can explain."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import click
import numpy as np

from onnxplain.errors import OnnxplainError

PARITY_BATCHES = (1, 8)
"""Batch sizes of the random inputs every exporter checks parity on."""


class Exporter(ABC):
    """An ``onnxplain.exporters`` plugin.

    An exporter brings its framework's own options, so it hands the command line a whole click
    command (``onnxplain export NAME ...``). It must import its framework only when the command runs,
    so that ``onnxplain plugins`` and ``--help`` work where the framework is not installed; when it
    is missing, the command tells how to install it (`install_hint`).
    """

    name: ClassVar[str] = ""
    framework: ClassVar[str] = ""
    install_hint: ClassVar[str] = ""

    @abstractmethod
    def command(self) -> click.Command:
        """The click command that ``onnxplain export NAME`` runs."""


class ExportError(OnnxplainError):
    """The model could not be exported, or its ONNX file does not compute what the framework computes."""


@dataclass(frozen=True)
class ExportReport:
    """What an exporter wrote and measured.

    Attributes
    ----------
    path : Path
        The ONNX file.
    opset : int
        ONNX opset of the file.
    max_abs_diff : dict of str to float
        Largest absolute difference between onnxruntime and the framework's outputs, per checked
        input (``'random, batch 1'``, ``'random, batch 8'``, ``'real 0'``...).
    """

    path: Path
    opset: int
    max_abs_diff: dict[str, float] = field(default_factory=dict)


def output_difference(name: str, actual: list[np.ndarray], expected: list[np.ndarray], *, atol: float,
                      framework: str, advice: str) -> float:
    """Largest absolute difference between onnxruntime's outputs and the framework's on input `name`.

    Raises `ExportError` when the outputs differ in shape, or by more than `atol` (NaN included),
    naming the input and giving `advice`.
    """
    shapes = [value.shape for value in actual], [value.shape for value in expected]
    if shapes[0] != shapes[1]:
        raise ExportError(f"onnxruntime and {framework} give outputs of different shapes on the {name} input: "
                          f"{shapes[0]} and {shapes[1]}")
    difference = max(float(np.abs(a - e).max()) for a, e in zip(actual, expected, strict=True))
    if not difference <= atol:  # also catches NaN
        raise ExportError(f"onnxruntime and {framework} disagree on the {name} input: max abs difference "
                          f"{difference:.3g} > {atol:g}; the export changed what the model computes ({advice})")
    return difference
