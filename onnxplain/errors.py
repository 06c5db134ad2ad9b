"""Errors that onnxplain raises for problems the user can fix."""


class OnnxplainError(ValueError):
    """A problem with the user's input or setup, worded as what is wrong and how to fix it.

    The command line prints these as one line, without a traceback.
    """


class PluginError(OnnxplainError):
    """A plugin is unknown, failed to import, or failed while running."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
