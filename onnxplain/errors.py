"""Errors that onnxplain raises for problems the user can fix."""

from __future__ import annotations


class OnnxplainError(ValueError):
    """A problem with the user's input or setup, worded as what is wrong and how to fix it.

    The message speaks of the problem, not of any interface. `parameters` names the settings
    (``'layout'``, ``'class_index'``...) that fix it, so that the command line can add its own flags
    and the Python API its own argument names. The command line prints these as one line,
    without a traceback.
    """

    def __init__(self, message: str, *, parameters: tuple[str, ...] = ()):
        super().__init__(message)
        self.parameters = parameters


class PluginError(OnnxplainError):
    """A plugin is unknown, failed to import, or failed while running."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
