"""Plugins found through Python entry points: methods, aggregators, scores, metrics and exporters.

A package adds a plugin with one line in its own ``pyproject.toml``::

    [project.entry-points."onnxplain.methods"]
    blur = "my_package.blur:BlurOcclusion"

onnxplain registers its built-ins the same way. Entry points are read lazily, once per kind (until
`Registry.refresh`), and a plugin is imported only when it is used or listed. A plugin that fails to
import is reported by name with its error, and the other plugins keep working.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from onnxplain.errors import PluginError
from onnxplain.parameters import accepted_parameters, check_names

GROUPS = {
    "method": "onnxplain.methods",
    "aggregator": "onnxplain.aggregators",
    "score": "onnxplain.scores",
    "metric": "onnxplain.metrics",
    "exporter": "onnxplain.exporters",
}
_OWN_DISTRIBUTION = "onnxplain"
# The interface each kind must implement, imported only when a plugin is created.
_INTERFACES = {
    "method": ("onnxplain.method", "Method"),
    "aggregator": ("onnxplain.perturbation.aggregate", "Aggregator"),
    "score": ("onnxplain.scores", "Score"),
    "exporter": ("onnxplain.exporter", "Exporter"),
    "metric": ("onnxplain.evaluation.metric", "Metric"),
}

EntryPoints = Callable[..., Iterable[importlib.metadata.EntryPoint]]


@dataclass(frozen=True)
class PluginInfo:
    """One installed plugin, as `onnxplain plugins` lists it.

    Attributes
    ----------
    kind : {'method', 'aggregator', 'score', 'metric', 'exporter'}
    name : str
        The name users pass (``--method hdm``).
    target : str
        Where it lives, ``'module:attribute'``.
    distribution, version : str
        The installed package that provides it.
    error : str or None
        Why it failed to import, or None when it works.
    """

    kind: str
    name: str
    target: str
    distribution: str
    version: str
    error: str | None = None

    @property
    def status(self) -> str:
        return "ok" if self.error is None else "broken"


class Registry:
    """Read-only view of the installed plugins.

    Parameters
    ----------
    entry_points : callable, optional
        ``entry_points(group=...)`` returning entry points; `importlib.metadata.entry_points` by
        default. Tests pass fakes.
    """

    def __init__(self, entry_points: EntryPoints | None = None):
        self._entry_points = entry_points or importlib.metadata.entry_points
        self._found: dict[str, dict[str, importlib.metadata.EntryPoint]] = {}
        self._loaded: dict[tuple[str, str], Any] = {}

    def refresh(self) -> None:
        """Forget what was discovered and loaded, so that newly installed plugins appear."""
        self._found.clear()
        self._loaded.clear()

    def names(self, kind: str) -> tuple[str, ...]:
        """Names of the installed plugins of `kind`, sorted, broken ones included."""
        return tuple(sorted(self._discover(kind)))

    def get(self, kind: str, name: str) -> Any:
        """Import and return the plugin `name` of `kind` (a class).

        Raises
        ------
        PluginError
            When no such plugin is installed (the message lists the installed ones) or when it
            fails to import (the message names it, its package and the error).
        """
        key = (kind, name)
        if key not in self._loaded:
            found = self._discover(kind)
            if name not in found:
                installed = ", ".join(sorted(found)) or "none"
                raise PluginError(f"unknown {kind} {name!r}; installed: {installed}")
            entry = found[name]
            try:
                loaded = entry.load()
            except Exception as error:
                raise PluginError(
                    f"{kind} plugin {name!r} ({_origin(entry)}) failed to import: "
                    f"{type(error).__name__}: {error}; reinstall or uninstall {_distribution(entry)[0]}"
                ) from error
            module, interface = _INTERFACES[kind]
            base = getattr(importlib.import_module(module), interface)
            if not (isinstance(loaded, type) and issubclass(loaded, base)):
                what = f"class {loaded.__name__}" if isinstance(loaded, type) else f"a {type(loaded).__name__}"
                raise PluginError(
                    f"{kind} plugin {name!r} ({_origin(entry)}) is {what}, not a subclass of {module}.{interface}; "
                    f"its entry point must name such a class (tell the maintainers of {_distribution(entry)[0]})")
            self._loaded[key] = loaded
        return self._loaded[key]

    def create(self, kind: str, name: str, **parameters: Any) -> Any:
        """Instantiate plugin `name` of `kind` with keyword `parameters`.

        Raises
        ------
        PluginError
            When the plugin cannot be imported, or rejects the parameters.
        """
        plugin = self.get(kind, name)
        check_names(plugin, sorted(parameters), label=name)
        try:
            return plugin(**parameters)
        except TypeError as error:
            raise PluginError(f"{kind} {name!r} cannot be made with {parameters}: {error}") from error

    def describe(self, kind: str | None = None) -> list[PluginInfo]:
        """Import every plugin (of `kind`, or of all kinds) and report each one's status."""
        infos = []
        for each_kind in [kind] if kind else list(GROUPS):
            for name, entry in sorted(self._discover(each_kind).items()):
                distribution, version = _distribution(entry)
                try:
                    self.get(each_kind, name)
                    error = None
                except PluginError as failure:
                    cause = failure.__cause__
                    error = f"{type(cause).__name__}: {cause}" if cause else str(failure)
                infos.append(PluginInfo(each_kind, name, entry.value, distribution, version, error))
        return infos

    def _discover(self, kind: str) -> dict[str, importlib.metadata.EntryPoint]:
        if kind not in GROUPS:
            raise PluginError(f"unknown plugin kind {kind!r}; kinds: {', '.join(GROUPS)}")
        if kind not in self._found:
            self._found[kind] = _by_name(kind, self._entry_points(group=GROUPS[kind]))
        return self._found[kind]


def _by_name(kind: str, entries: Iterable[importlib.metadata.EntryPoint]) -> dict:
    """Index entry points by name; on a clash keep onnxplain's own, else the first, and warn."""
    chosen: dict[str, importlib.metadata.EntryPoint] = {}
    # onnxplain's built-ins first, then by package name, so the winner of a clash never varies.
    ordered = sorted(entries, key=lambda e: (_distribution(e)[0] != _OWN_DISTRIBUTION, _distribution(e)[0]))
    for entry in ordered:
        kept = chosen.get(entry.name)
        if kept is None:
            chosen[entry.name] = entry
        elif (kept.value, _distribution(kept)) != (entry.value, _distribution(entry)):
            # The same entry point seen twice (an editable install) is no clash.
            warnings.warn(
                f"two {kind} plugins are named {entry.name!r}: {_origin(kept)} and {_origin(entry)}; "
                f"using the first. Uninstall one of them to silence this warning.",
                RuntimeWarning,
                stacklevel=4,
            )
    return chosen


def _distribution(entry: importlib.metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(entry, "dist", None)
    if dist is None:
        return "unknown package", "?"
    return dist.metadata["Name"] or "unknown package", dist.version or "?"


def _origin(entry: importlib.metadata.EntryPoint) -> str:
    name, version = _distribution(entry)
    return f"{entry.value} from {name} {version}"


def plugin_parameters(plugin: object, cls: type | None = None) -> dict[str, Any]:
    """The keyword arguments `plugin` was made with, read from attributes of the same names.

    Plugins keep each constructor argument as an attribute of the same name; this turns them into
    the plain record that explanations save, with no hand-written ``get_config``. `cls` names the
    class whose constructor to read, when not the plugin's own.
    """
    names = accepted_parameters(cls or type(plugin))
    return {name: _plain(getattr(plugin, name)) for name in names if hasattr(plugin, name)}


def _plain(value: Any) -> Any:
    """A parameter as a record stores it: plugins by name, everything else as it is."""
    name = getattr(value, "name", None)
    if isinstance(name, str) and hasattr(value, "parameters") and not isinstance(value, type):
        return {"name": name, "parameters": value.parameters()}
    return value


plugins = Registry()
"""The registry of installed plugins that onnxplain itself uses."""
