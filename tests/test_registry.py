"""Plugin discovery: entry points, laziness, isolation of broken plugins, in-code registration."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ad_buyer_storage import BackendNotFoundError, BackendSpec, PluginLoadError, Storage, registry
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.plugins.registry import Registry


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
        "from ad_buyer_storage import registry\n"
        "registry.get('sqlite').load_factory()\n"
        "print(json.dumps(sorted(m for m in ('redis', 'asyncpg', 'fakeredis', 'aiosqlite') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout) == ["aiosqlite"]


def test_listing_plugins_imports_no_driver() -> None:
    code = (
        "import sys, json\n"
        "from ad_buyer_storage import registry\n"
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
    code = f"{first}\nfrom ad_buyer_storage import registry\nprint(type(registry).__name__)"
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
