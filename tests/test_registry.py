"""The plugin registry, on fake entry points: working, broken, duplicate, unknown plugins."""

from importlib.metadata import EntryPoint

import pytest

from onnxplain.errors import PluginError
from onnxplain.registry import GROUPS, Registry, plugins

GROUP = GROUPS["method"]


def fake_entry_points(*entries):
    calls = []

    def entry_points(group):
        calls.append(group)
        return [e for e in entries if e.group == group]

    entry_points.calls = calls
    return entry_points


HDM = EntryPoint("hdm", "onnxplain.perturbation.hdm:Hdm", GROUP)
RISE = EntryPoint("rise", "onnxplain.perturbation.rise:Rise", GROUP)
BROKEN = EntryPoint("broken", "onnxplain_no_such_module:Thing", GROUP)


class Distribution:
    def __init__(self, name, version):
        self.metadata = {"Name": name}
        self.version = version


class EntryPointFrom:
    """An entry point that knows its distribution, as installed ones do."""

    def __init__(self, entry, name, version):
        self.name, self.value, self.group = entry.name, entry.value, entry.group
        self.dist = Distribution(name, version)
        self._entry = entry

    def load(self):
        return self._entry.load()


def test_builtins_are_registered_through_entry_points():
    assert {"hdm", "rise"} <= set(plugins.names("method"))
    assert {"hausdorff", "dice", "class-score"} <= set(plugins.names("score"))
    assert "torch" in plugins.names("exporter")


def test_discovery_is_lazy_and_cached():
    entry_points = fake_entry_points(HDM, RISE)
    registry = Registry(entry_points)
    assert entry_points.calls == []
    registry.names("method")
    registry.get("method", "hdm")
    registry.names("method")
    assert entry_points.calls == [GROUP]
    registry.refresh()
    registry.names("method")
    assert entry_points.calls == [GROUP, GROUP]


def test_get_loads_the_class():
    from onnxplain.perturbation.hdm import Hdm

    assert Registry(fake_entry_points(HDM)).get("method", "hdm") is Hdm


def test_unknown_name_lists_the_installed_ones():
    registry = Registry(fake_entry_points(HDM, RISE))
    with pytest.raises(PluginError, match=r"unknown method 'blur'; installed: hdm, rise"):
        registry.get("method", "blur")


def test_broken_plugin_is_reported_by_name_and_the_others_keep_working():
    registry = Registry(fake_entry_points(HDM, BROKEN))
    with pytest.raises(PluginError, match=r"plugin 'broken' .*failed to import: ModuleNotFoundError"):
        registry.get("method", "broken")
    assert registry.get("method", "hdm").name == "hdm"
    infos = {info.name: info for info in registry.describe("method")}
    assert infos["hdm"].status == "ok"
    assert infos["broken"].status == "broken"
    assert "No module named 'onnxplain_no_such_module'" in infos["broken"].error


def test_duplicate_name_is_reported_with_both_origins():
    other = EntryPointFrom(EntryPoint("hdm", "onnxplain.perturbation.rise:Rise", GROUP), "someone-elses-hdm", "2.0")
    registry = Registry(fake_entry_points(EntryPointFrom(HDM, "onnxplain", "0.1.0"), other))
    with pytest.warns(RuntimeWarning, match=r"onnxplain.perturbation.hdm:Hdm from onnxplain 0.1.0 and "
                                            r"onnxplain.perturbation.rise:Rise from someone-elses-hdm 2.0"):
        registry.names("method")
    assert registry.get("method", "hdm").name == "hdm"  # onnxplain's own wins


def test_the_same_entry_point_twice_is_no_clash(recwarn):
    registry = Registry(fake_entry_points(HDM, HDM))
    assert registry.names("method") == ("hdm",)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_describe_names_the_distribution():
    registry = Registry(fake_entry_points(EntryPointFrom(HDM, "onnxplain", "0.1.0")))
    (info,) = registry.describe("method")
    assert (info.kind, info.name, info.distribution, info.version, info.status) == (
        "method", "hdm", "onnxplain", "0.1.0", "ok")


def test_create_reports_bad_parameters():
    registry = Registry(fake_entry_points(HDM))
    assert registry.create("method", "hdm", offset=7).offset == 7
    with pytest.raises(PluginError, match="has no parameter .radius.; its parameters: circle_size, offset"):
        registry.create("method", "hdm", radius=3)


def test_unknown_kind():
    with pytest.raises(PluginError, match="unknown plugin kind 'colour'"):
        Registry(fake_entry_points()).names("colour")


def test_registry_has_no_way_to_register_by_hand():
    assert not any(name.startswith(("register", "add")) for name in dir(Registry))


def test_a_plugin_of_the_wrong_kind_is_refused():
    wrong = EntryPoint("counter", "collections:Counter", GROUP)
    with pytest.raises(PluginError, match=r"method plugin 'counter' .* is class Counter, not a subclass of "
                                          r"onnxplain.method.Method"):
        Registry(fake_entry_points(wrong)).create("method", "counter")


def test_a_function_registered_as_a_plugin_is_listed_as_broken():
    function = EntryPoint("helper", "os.path:join", GROUP)
    (info,) = Registry(fake_entry_points(function)).describe("method")
    assert info.status != "ok" and "is a function, not a subclass of onnxplain.method.Method" in info.error
