"""Plugin discovery: entry points, laziness, isolation of broken plugins, in-code registration."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ad_buyer_storage import BackendNotFoundError, Capability, PluginLoadError, Storage
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.errors import PluginValidationError
from ad_buyer_storage.plugins import BackendSpec
from ad_buyer_storage.plugins.registry import Registry, register_backend, registry
from ad_buyer_storage.plugins.settings import StorageSettings
from ad_buyer_storage.plugins.spec import spec_problems


def test_our_backends_and_a_strangers_are_found_through_entry_points() -> None:
    specs, failures = Registry().discover()
    assert {"memory", "sqlite", "dictstore"} <= set(specs)
    assert specs["sqlite"].distribution == "ad-buyer-storage-sqlite"
    assert specs["dictstore"].distribution == "ad-buyer-storage-example"
    assert specs["dictstore"].version == "0.0.1"
    assert "broken_example" in failures
    assert "ad_buyer_storage_no_such_driver" in failures["broken_example"].error


def test_a_broken_plugin_never_breaks_the_host() -> None:
    fresh = Registry()
    with pytest.raises(PluginLoadError, match="failed to load"):
        fresh.get("broken_example")
    assert fresh.get("sqlite").name == "sqlite"  # everything else still works


def test_unknown_name_lists_installed_backends_and_an_install_hint() -> None:
    with pytest.raises(BackendNotFoundError) as info:
        Registry().get("nope")
    assert "installed: " in str(info.value)
    assert "memory" in str(info.value)
    assert "sqlite" in str(info.value)
    assert isinstance(info.value, LookupError)
    assert isinstance(info.value, ValueError)
    bare = Registry(group="ad_buyer_storage.tests.empty_group")  # a host with no plugins installed
    with pytest.raises(
        BackendNotFoundError, match=r"installed: none\..*this project's: pip install ad-buyer-storage-redis"
    ):
        bare.get("redis")  # not installed: core knows no backend, only how this project names them


def test_resolving_sqlite_imports_no_other_driver() -> None:
    code = (
        "import sys, json\n"
        "from ad_buyer_storage.plugins.registry import registry\n"
        "registry.get('sqlite').load_factory()\n"
        "print(json.dumps(sorted(m for m in ('redis', 'asyncpg', 'fakeredis', 'aiosqlite') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout) == ["aiosqlite"]


def test_listing_plugins_imports_no_driver() -> None:
    code = (
        "import sys, json\n"
        "from ad_buyer_storage.plugins.registry import registry\n"
        "registry.discover()\n"
        "print(json.dumps(sorted(m for m in ('redis', 'asyncpg', 'aiosqlite') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout) == []


async def test_registering_a_backend_in_code() -> None:
    fresh = Registry()
    fresh.register(BackendSpec("mine", lambda settings, **kw: MemoryBackend(**kw)))
    backend = fresh.create("mine", None)
    async with Storage(backend) as storage:
        await storage.set("k", 1)
        assert await storage.get("k") == 1
    with pytest.raises(ValueError, match="already registered"):
        fresh.register(BackendSpec("mine", "elsewhere:factory"))


def test_a_factory_that_cannot_import_gives_the_plugin_s_install_hint() -> None:
    fresh = Registry()
    fresh.register(BackendSpec("redis", "ad_buyer_storage_redis_missing.backend:create",
                               install_hint="pip install ad-buyer-storage-redis"))  # fmt: skip
    with pytest.raises(PluginLoadError, match=r"pip install ad-buyer-storage-redis"):
        fresh.get("redis").load_factory()


def test_default_registry_is_shared() -> None:
    assert registry.get("memory").name == "memory"


@pytest.mark.parametrize(
    "first", ["import ad_buyer_storage.plugins.factory", "import ad_buyer_storage.plugins.registry", "pass"]
)
def test_the_default_registry_is_the_registry_whatever_was_imported_first(first: str) -> None:
    """`registry` is also a submodule's name: importing that submodule must not shadow it."""
    code = f"{first}\nfrom ad_buyer_storage.plugins.registry import registry\nprint(type(registry).__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "Registry"


def test_an_unknown_name_that_is_a_url_is_never_quoted_in_the_install_hint() -> None:
    with pytest.raises(BackendNotFoundError) as info:
        Registry().get("redis:/:Sup3rS3cret@h/0")  # a URL that lost a slash, given as a name
    assert "Sup3rS3cret" not in str(info.value)
    assert "pip install" not in str(info.value)


# Run first in a child: OpenTelemetry made unimportable, as when the `otel` extra is not installed.
_WITHOUT_OTEL = (
    "import sys\n"
    "class _NoOtel:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'opentelemetry' or name.startswith('opentelemetry.'):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, _NoOtel())\n"
    "for name in [m for m in sys.modules if m.startswith('opentelemetry')]:\n"
    "    del sys.modules[name]\n"
)


@pytest.mark.parametrize(
    "code",
    [
        "import io, pydoc, ad_buyer_storage\nassert 'open_storage' in pydoc.render_doc(ad_buyer_storage)\n",
        "import contextlib, io, ad_buyer_storage\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    help(ad_buyer_storage)\n"
        "assert 'get_storage_backend' in out.getvalue()\n",
        "from ad_buyer_storage import *\nassert callable(open_storage)\n",
        "import ad_buyer_storage\n"
        "assert 'StorageInstrumentor' not in dir(ad_buyer_storage)\n"
        "assert 'open_storage' in ad_buyer_storage.__all__\n"
        "try:\n"
        "    from ad_buyer_storage import StorageInstrumentor\n"
        "except ImportError as exc:\n"
        "    assert 'ad-buyer-storage-core[otel]' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('imported without OpenTelemetry')\n",
    ],
    ids=["pydoc", "help", "star-import", "the-instrumentor-says-what-to-install"],
)
def test_the_package_documents_and_imports_without_opentelemetry(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", _WITHOUT_OTEL + code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_with_opentelemetry_the_instrumentor_is_listed() -> None:
    code = (
        "import ad_buyer_storage\n"
        "assert 'StorageInstrumentor' in ad_buyer_storage.__all__\n"
        "assert 'StorageInstrumentor' in dir(ad_buyer_storage)\n"
        "from ad_buyer_storage import StorageInstrumentor\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# -- BackendSpec validated when a plugin registers ------------------------------------------------


def _factory(settings: object, **overrides: object) -> MemoryBackend:
    return MemoryBackend()


class _NotSettings:
    pass


#: One bad field each: (field, the spec's keywords).
_INVALID: list[tuple[str, dict[str, object]]] = [
    ("name", {"name": "My Store"}),
    ("name", {"name": "mystore-2"}),
    ("name", {"name": "Mystore"}),
    ("name", {"name": "x" * 64}),
    ("factory", {"factory": "not a reference"}),
    ("factory", {"factory": "package.module"}),  # no attribute: a module is never a factory
    ("factory", {"factory": 42}),
    ("description", {"description": None}),
    ("url_setting", {"url_setting": "DBM_URL"}),
    ("url_setting", {"url_setting": "dbm"}),
    ("url_setting", {"url_setting": "storage_type"}),  # a core setting, not a URL setting
    ("url_schemes", {"url_schemes": ("MYS",)}),
    ("url_schemes", {"url_schemes": ("mys://",)}),
    ("url_schemes", {"url_schemes": ("1mys",)}),
    ("url_schemes", {"url_schemes": "mys"}),  # a str is not a tuple of schemes
    ("url_schemes", {"url_schemes": ["mys"]}),
    ("url_default", {"url_setting": "mys_url", "url_schemes": ("mys",), "url_default": "./x.db"}),
    ("url_default", {"url_schemes": ("mys",), "url_default": "mys:///./x.db"}),  # no url_setting
    ("url_default", {"url_setting": "mys_url", "url_schemes": ("mys",), "url_default": "other:///x"}),
    ("settings", {"settings": "not a reference"}),
    ("settings", {"settings": _NotSettings}),
    ("install_hint", {"install_hint": ["pip", "install", "x"]}),
    ("rank", {"rank": "high"}),
    ("rank", {"rank": 101}),
    ("rank", {"rank": -101}),
    ("rank", {"rank": 1.5}),
    ("rank", {"rank": True}),
    ("fast", {"fast": "yes"}),
    ("composite", {"composite": 1}),
    ("capabilities", {"capabilities": {Capability.EXPIRY}}),  # a set: a spec is frozen, its fields too
    ("capabilities", {"capabilities": frozenset({"expiry"})}),
]


def _spec(**fields: object) -> BackendSpec:
    name = fields.pop("name", "mystore")
    factory = fields.pop("factory", _factory)
    return BackendSpec(name, factory, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "fields"), _INVALID, ids=[f"{f}={v}" for f, v in _INVALID])
def test_each_bad_field_is_refused_naming_the_plugin_and_the_field(field: str, fields: dict[str, object]) -> None:
    spec = _spec(**fields)
    assert [name for name, _ in spec_problems(spec)] == [field]
    with pytest.raises(PluginValidationError) as info:
        Registry().register(spec)
    assert info.value.fields == (field,)
    assert info.value.plugin == "registered in code"
    assert f"storage plugin registered in code: BackendSpec {spec.name!r} is invalid: {field} must be" in str(
        info.value
    )
    assert isinstance(info.value, PluginLoadError)


def test_the_issue_s_spec_is_refused_with_every_bad_field_named() -> None:
    with pytest.raises(PluginValidationError, match=r"name must be .*url_schemes must be .*rank must be") as info:
        register_backend(BackendSpec("My Store", _factory, url_schemes=("MYS",), rank="high"))  # type: ignore[arg-type]
    assert info.value.fields == ("name", "url_schemes", "rank")
    assert "My Store" not in registry._specs


@pytest.mark.parametrize(
    "spec",
    [
        BackendSpec("dbm", "my_dbm.backend:create_backend", url_setting="dbm_url", url_schemes=("dbm",)),
        BackendSpec("mys", _factory, url_setting="mys_url", url_schemes=("mys", "mys+tls"), url_default="mys://h"),
        BackendSpec("m2", "a.b:C.d", settings="a.b:Settings", rank=-100, capabilities=frozenset(), fast=True),
        BackendSpec("m3", _factory, rank=100, settings=StorageSettings, install_hint="pip install m3"),
    ],
    ids=["dbm", "url-default", "references", "classes"],
)
def test_valid_specs_register(spec: BackendSpec) -> None:
    assert spec_problems(spec) == []
    fresh = Registry()
    fresh.register(spec)
    assert fresh.get(spec.name) is spec


def test_our_plugins_and_the_example_s_are_valid() -> None:
    specs, failures = Registry().discover()
    assert set(failures) == {"broken_example"}  # its import fails, on purpose; every spec is valid
    assert {"memory", "hybrid", "mirror", "sqlite", "redis", "postgres", "dictstore"} <= set(specs)
    for spec in specs.values():
        assert spec_problems(spec) == [], spec.name


def _installed_plugin(root: Path, group: str, body: str) -> None:
    """A distribution 'bad-plugin' 0.3 whose entry point 'badplug' in *group* is a module with *body*."""
    (root / "bad_plugin_mod.py").write_text(body)
    dist_info = root / "bad_plugin-0.3.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: bad-plugin\nVersion: 0.3\n")
    (dist_info / "entry_points.txt").write_text(f"[{group}]\nbadplug = bad_plugin_mod\n")


_BAD_PLUGIN = (
    "from ad_buyer_storage.plugins import BackendSpec, hookimpl\n\n"
    "@hookimpl\n"
    "def ad_buyer_storage_backends():\n"
    "    return [\n"
    "        BackendSpec('My Store', 'bad_plugin_mod:factory', url_schemes=('MYS',), rank='high'),\n"
    "        BackendSpec('goodone', 'bad_plugin_mod:factory', url_schemes=('good',)),\n"
    "        'not a spec',\n"
    "    ]\n\n"
    "def factory(settings, **overrides):\n"
    "    from ad_buyer_storage.backends.memory import MemoryBackend\n"
    "    return MemoryBackend()\n"
)


def test_an_invalid_entry_point_plugin_is_listed_as_broken_and_the_host_runs_on(tmp_path, monkeypatch) -> None:
    group = "ad_buyer_storage.tests.invalid_spec"
    _installed_plugin(tmp_path, group, _BAD_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh = Registry(group=group)
    specs, failures = fresh.discover()
    assert set(specs) == {"goodone"}  # the plugin's valid spec is kept
    error = failures["badplug"].error
    assert failures["badplug"].distribution == "bad-plugin"
    assert error.startswith("PluginValidationError: storage plugin 'badplug' (bad-plugin 0.3): BackendSpec 'My Store'")
    for words in ("name must be", "url_schemes must be", "rank must be an int", "returned str, not a BackendSpec"):
        assert words in error
    with pytest.raises(PluginLoadError, match=r"'badplug' is installed but failed to load: PluginValidationError"):
        fresh.get("badplug")


def test_the_backends_command_lists_an_invalid_plugin_as_failed(tmp_path) -> None:
    _installed_plugin(tmp_path, "ad_buyer_storage.backends", _BAD_PLUGIN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "ad_buyer_storage.cli", "backends"], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    listed, failed = done.stdout.split("failed to load (skipped):")
    assert re.search(r"^\s+sqlite\s", listed, re.M)
    assert re.search(r"^\s+goodone\s+bad-plugin 0\.3", listed, re.M)
    assert re.search(r"badplug\s+bad-plugin: PluginValidationError: .*'My Store'.*rank must be", failed)


def test_a_settings_model_that_cannot_load_makes_the_backend_unusable() -> None:
    spec = BackendSpec("nomodel", _factory, settings="ad_buyer_storage_no_such_module.settings:Model")
    assert spec_problems(spec) == []  # its shape is checked when it registers; nothing is imported then
    problem = spec.unusable()
    assert problem is not None
    assert "settings model 'ad_buyer_storage_no_such_module.settings:Model' could not be loaded" in problem
    with pytest.raises(PluginLoadError, match="could not be loaded"):
        spec.settings_model()


def test_names_that_moved_still_import_from_the_top_level_with_a_warning() -> None:
    """A plugin written against the 0.1 API (``from ad_buyer_storage import BackendSpec, hookimpl``)
    keeps working for one minor release; the warning says where the name lives now."""
    import ad_buyer_storage  # noqa: PLC0415 - the attribute access is the point
    from ad_buyer_storage.composed import HybridBackend  # noqa: PLC0415
    from ad_buyer_storage.contract import Record  # noqa: PLC0415

    with pytest.warns(DeprecationWarning, match="import it from ad_buyer_storage.plugins"):
        assert ad_buyer_storage.BackendSpec is BackendSpec  # type: ignore[attr-defined]
    with pytest.warns(DeprecationWarning, match="ad_buyer_storage.contract"):
        assert ad_buyer_storage.Record is Record  # type: ignore[attr-defined]
    with pytest.warns(DeprecationWarning, match="ad_buyer_storage.composed"):
        assert ad_buyer_storage.HybridBackend is HybridBackend  # type: ignore[attr-defined]
    assert "Record" not in ad_buyer_storage.__all__
    assert len(ad_buyer_storage.__all__) <= 80, "the top level is agent code's API and the errors"
