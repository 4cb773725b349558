"""Run the AdCP SDK's store tests against our adapters, on every backend.

``ADCP_SDK_TESTS`` names the ``tests/`` folder of the SDK's sdist (``nox -s adcp-conformance``
downloads and unpacks it). Each ``test_sdk_*.py`` here imports one SDK module unchanged and
replaces what stands for its store: a fixture redefined here, or, where the module builds the
store itself, the class it builds patched (for the test's duration) with one of our adapters.
Every test runs once per backend (memory, SQLite, Redis, PostgreSQL, hybrid); the tests that
cannot apply to our adapters are deselected by name, each with its reason (printed at the end).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from ad_buyer_storage import Store, build_store

SDK_TESTS = os.environ.get("ADCP_SDK_TESTS")
if not SDK_TESTS or not Path(SDK_TESTS, "test_proposal_store.py").is_file():
    raise pytest.UsageError("set ADCP_SDK_TESTS to the tests/ folder of the adcp sdist (nox -s adcp-conformance)")
sys.path.insert(0, SDK_TESTS)

POSTGRES_URL = os.environ.get("AD_BUYER_STORAGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("AD_BUYER_STORAGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BACKENDS = ["memory", "sqlite", "redis", "postgres", "hybrid"]
#: Backends whose store declares Capability.DURABLE.
DURABLE = {"sqlite", "postgres", "hybrid"}
TAG = uuid.uuid4().hex[:12]
SCHEMA, PREFIX = f"abs_test_adcp_{TAG}", f"abs-test:adcp-{TAG}:"

#: Deselected SDK tests: {module: {test name: why it cannot apply}}, filled by the wrappers.
CANNOT_APPLY: dict[str, dict[str, str]] = {}


def cannot_apply(module: str, reasons: dict[str, str]) -> None:
    CANNOT_APPLY.setdefault(module, {}).update(reasons)


@pytest.fixture(scope="session", autouse=True)
def _isolated_servers() -> Iterator[None]:
    """One PostgreSQL schema and one Redis key prefix for the run, removed at the end."""
    os.environ.update(
        {"POSTGRES_SCHEMA": SCHEMA, "POSTGRES_SWEEP_INTERVAL": "0", "REDIS_KEY_PREFIX": PREFIX}
    )  # fmt: skip
    yield
    subprocess.run(["psql", POSTGRES_URL, "-qc", f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'], check=False,
                   capture_output=True)  # fmt: skip
    cli = ["redis-cli", "-h", "127.0.0.1", "-p", "6379"]
    keys = subprocess.run([*cli, "--scan", "--pattern", PREFIX + "*"], capture_output=True, text=True,
                          check=False).stdout.split()  # fmt: skip
    if keys:
        subprocess.run([*cli, "DEL", *keys], check=False, capture_output=True)
    subprocess.run([*cli, "SREM", "ad_buyer_storage:namespaces", PREFIX], check=False, capture_output=True)


def _target(name: str, tmp: Path) -> str:
    return {
        "memory": "memory",
        "sqlite": f"sqlite:///{tmp / 'adcp.db'}",
        "redis": REDIS_URL,
        "postgres": POSTGRES_URL,
        "hybrid": "hybrid",
    }[name]


@pytest.fixture(params=BACKENDS, autouse=True)
def adcp_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The backend this run of the test uses (every SDK test runs once per backend)."""
    if request.param == "hybrid":
        monkeypatch.setenv("DATABASE_URL", POSTGRES_URL)
        monkeypatch.setenv("REDIS_URL", REDIS_URL)
    return str(request.param)


@pytest.fixture
async def our_store(adcp_backend: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A connected store on the test's backend, closed after the test (adapters borrow it)."""
    async with build_store(_target(adcp_backend, tmp_path)) as store:
        yield store


@pytest.fixture
def namespace() -> str:
    """A namespace of the test's own: tests sharing a server never see each other's keys."""
    return f"t{uuid.uuid4().hex[:16]}"


@pytest.fixture
def adapter(our_store: Store, namespace: str) -> Callable[..., object]:
    """``adapter(Class, **kwargs)``: one of our adapters on the test's store and namespace."""

    def make(cls: Callable[..., object], **kwargs: object) -> object:
        return cls(our_store, namespace=namespace, **kwargs)

    return make


@pytest.fixture
def durable_class(adcp_backend: str, our_store: Store, namespace: str) -> Callable[..., type]:
    """``durable_class(Adapter, **kwargs)``: a subclass of one of our adapters standing for the
    SDK's PostgreSQL class: built like it (``pool=`` and the like ignored: our store is the
    test's), with ``is_durable`` a class attribute, true exactly on the backends that declare
    durability."""

    def make(cls: type, **kwargs: object) -> type:
        def __init__(self: object, *ignored: object, **ignored_too: object) -> None:
            cls.__init__(self, our_store, namespace=namespace, **kwargs)

        attributes = {"is_durable": adcp_backend in DURABLE, "__init__": __init__}
        return type(f"{cls.__name__}On{adcp_backend.title()}", (cls,), attributes)

    return make


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, dropped = [], []
    for item in items:
        module = Path(str(item.fspath)).stem
        name = item.originalname if isinstance(item, pytest.Function) else item.name
        qualified = f"{item.cls.__name__}::{name}" if getattr(item, "cls", None) is not None else name
        reasons = CANNOT_APPLY.get(module, {})
        backend = item.callspec.params.get("adcp_backend") if isinstance(item, pytest.Function) else None
        names = {name, qualified, f"{name}@{backend}", f"{qualified}@{backend}"}
        (dropped if names & reasons.keys() else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    counts: Counter[tuple[str, str]] = Counter()
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", "call") not in ("call", "setup") or (
                outcome == "passed" and report.when != "call"
            ):
                continue
            backend = next((b for b in BACKENDS if f"[{b}" in report.nodeid or f"-{b}]" in report.nodeid), "?")
            counts[(backend, outcome)] += 1
    terminalreporter.section("AdCP SDK store tests on our adapters, per backend")
    for backend in BACKENDS:
        line = ", ".join(f"{counts[(backend, o)]} {o}" for o in ("passed", "failed", "error", "skipped"))
        terminalreporter.write_line(f"{backend:9} {line}")
    terminalreporter.section("SDK tests that cannot apply to our adapters (deselected)")
    for module, reasons in sorted(CANNOT_APPLY.items()):
        for name, why in sorted(reasons.items()):
            terminalreporter.write_line(f"{module}::{name}: {why}")
