"""Plugin parameters written as text, ``NAME=VALUE``, read by the types of the plugin's constructor."""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path

from onnxplain.errors import PluginError

_NONE_WORDS = ("none", "null")
_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


def accepted_parameters(plugin: type) -> list[str]:
    """Names of the keyword arguments `plugin`'s constructor takes.

    A constructor that passes ``**options`` on to its base class takes the base's parameters too,
    so a method lists only its own parameters and inherits the shared ones (fill, score...).
    """
    return list(_constructors(plugin))


def _constructors(plugin: type) -> dict[str, typing.Callable]:
    """Each accepted keyword name, mapped to the constructor that declares it (own ones first)."""
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    found: dict[str, typing.Callable] = {}
    for cls in plugin.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        for parameter in parameters:
            if parameter.kind in kinds and parameter.name != "self":
                found.setdefault(parameter.name, init)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            break
    return found


def _hints(plugin: type) -> dict[str, object]:
    hints: dict[str, object] = {}
    for name, init in _constructors(plugin).items():
        try:
            hints[name] = typing.get_type_hints(init).get(name, str)
        except Exception:  # annotations that cannot be evaluated: values stay text
            hints[name] = str
    return hints


def parse_parameters(plugin: type, pairs: typing.Iterable[str]) -> dict[str, typing.Any]:
    """Read ``NAME=VALUE`` strings into keyword arguments of `plugin`, typed by its annotations.

    Parameters
    ----------
    plugin : type
        The plugin class.
    pairs : iterable of str
        ``NAME=VALUE`` strings; dashes in names read as underscores.

    Returns
    -------
    dict

    Examples
    --------
    >>> from onnxplain.perturbation.hdm import Hdm
    >>> parse_parameters(Hdm, ["offset=5", "fill=mean", "normalize=no"])
    {'offset': 5, 'fill': 'mean', 'normalize': False}
    """
    hints = _hints(plugin)
    values = {}
    for pair in pairs:
        name, separator, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not separator:
            raise PluginError(f"{pair!r} is not NAME=VALUE")
        check_names(plugin, [name])
        values[name] = _coerce(text.strip(), hints[name], name)
    return values


def check_names(plugin: type, names: typing.Iterable[str], *, label: str | None = None) -> None:
    """Raise `PluginError` for the first of `names` that `plugin`'s constructor does not take, listing those it does."""
    accepted = accepted_parameters(plugin)
    unknown = [name for name in names if name not in accepted]
    if unknown:
        label = label or getattr(plugin, "name", "") or plugin.__name__
        raise PluginError(f"{label!r} has no parameter {unknown[0]!r}; its parameters: {', '.join(accepted) or 'none'}")


def _coerce(text: str, annotation: object, name: str) -> object:
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    kinds = typing.get_args(annotation) if union else (annotation,)
    lowered = text.lower()
    if type(None) in kinds and lowered in _NONE_WORDS:
        return None
    if bool in kinds and lowered in _TRUE_WORDS + _FALSE_WORDS:
        return lowered in _TRUE_WORDS
    for kind in (int, float):
        if kind in kinds:
            try:
                return kind(text)
            except ValueError:
                pass
    if str in kinds or Path in kinds or typing.Any in kinds:
        return text
    readable = " or ".join(getattr(k, "__name__", str(k)) for k in kinds if k is not type(None))
    raise PluginError(f"{name}={text!r} is not a valid {readable}")
