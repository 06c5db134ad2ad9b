"""The exporter interface: turn a model of some framework into an ONNX file onnxplain can explain."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import click


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
