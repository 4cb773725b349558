"""pytest plugin (entry point ``pytest11``): the kit's markers, and its certification report.

At the end of a run that ran kit tests, it prints per tested class (one backend through one
harness) and per area (lifecycle, kv, listing, ttl, atomic, transactions, pubsub,
multi_process, durable, domain, coordination) how many tests passed, failed and were skipped,
and why they were skipped::

    ad-buyer-storage conformance: TestMyBackendContract [mybackend (expiry)]  CERTIFIED
      lifecycle      3/3 passed
      kv             53/53 passed, 1 skipped (the harness gives no way to make the store refuse a key ...)
      ...
      atomic         refusal 1/1 passed, 21 skipped (not claimed: ATOMIC)

A test that checks the refusal of an unclaimed capability, skipped because the backend claims
it, is left out of the counts: it does not apply, and the claim's own tests count instead.

It also gives pytest-asyncio's ``asyncio_default_fixture_loop_scope`` a value when the project
running the kit left it unset, so a backend author's first run carries no deprecation warning.

Imports only pytest, so having core installed never slows or breaks an unrelated test run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import pytest

__all__ = ["AREA_PROPERTY", "AREAS", "BACKEND_PROPERTY"]

#: The areas a backend is certified by, in report order; a capability's area is named after it.
AREAS = (
    "lifecycle",
    "kv",
    "listing",
    "ttl",
    "atomic",
    "transactions",
    "pubsub",
    "multi_process",
    "durable",
    "domain",
    "coordination",
)
#: ``user_properties`` names kit tests carry into their reports (so they also cross xdist).
AREA_PROPERTY = "ad_buyer_storage.certifies"
BACKEND_PROPERTY = "ad_buyer_storage.backend"

_LOOP_SCOPE = "asyncio_default_fixture_loop_scope"
#: How a kit test skipped for a capability the backend does not claim starts its reason.
_NOT_CLAIMED = "not claimed: "


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance: a test from the ad-buyer-storage conformance kit")
    config.addinivalue_line("markers", "multiprocess: a conformance test that starts child processes")
    config.addinivalue_line(
        "markers",
        "certifies(area, needs=(), absent=None, key=None): the conformance area a kit test certifies, "
        "the capabilities it needs (skipped if unclaimed), or the one whose refusal it checks",
    )
    config.pluginmanager.register(Certification(), "ad_buyer_storage_certification")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Runs before any plugin's ``pytest_configure``, where pytest-asyncio reads the option."""
    _default_loop_scope(config)


def _default_loop_scope(config: pytest.Config) -> None:
    """Give ``asyncio_default_fixture_loop_scope`` a value if the project left it unset.

    pytest-asyncio warns (a ``PytestDeprecationWarning``, an error under ``-W error``) whenever
    it is unset, which is every backend author's first run of the kit. A value the project sets
    (in its configuration or with ``-o``) always wins. Otherwise: ``"fixture-scope"`` where
    pytest-asyncio knows it (exactly what "unset" means today: each async fixture's loop lives
    as long as the fixture), else ``"function"`` (its announced default; the kit's own fixtures
    are function-scoped either way).
    """
    try:
        current = config.getini(_LOOP_SCOPE)
    except ValueError:  # pytest-asyncio is not loaded (-p no:asyncio): nothing warns
        return
    if current:
        return
    asyncio_plugin = config.pluginmanager.get_plugin("asyncio")
    value = getattr(asyncio_plugin, "_MATCH_FIXTURE_SCOPE", None) or "function"
    cache = getattr(config, "_inicache", None)  # where getini keeps values (pytest 8 and 9)
    if isinstance(cache, dict):
        cache[_LOOP_SCOPE] = value


class _Terminal(Protocol):
    """What the summary writes with: pytest's terminal reporter (`pytest.TerminalReporter` is
    exported from pytest 8.4 on; the kit supports 8.2)."""

    def write_sep(self, sep: str, title: str | None = None, **markup: bool) -> None: ...

    def write_line(self, line: str | bytes, **markup: bool) -> None: ...


@dataclass
class _Outcome:
    """The outcome of one kit test, from its setup, call and teardown reports."""

    group: str  # the tested class: "path::TestClass"
    area: str
    refusal: bool  # it checks the refusal of an unclaimed capability
    result: str = "pending"  # passed, failed or skipped
    reason: str = ""


@dataclass
class _Area:
    passed: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    refusals: list[bool] = field(default_factory=list)  # passed or not, per refusal check run

    def reasons(self) -> str:
        """The skip reasons, the capabilities not claimed merged into one."""
        unclaimed: list[str] = []
        others: list[str] = []
        for reason in self.skipped:
            if reason.startswith(_NOT_CLAIMED):
                unclaimed += [c for c in reason.removeprefix(_NOT_CLAIMED).split(", ") if c not in unclaimed]
            else:
                others.append(reason)
        return "; ".join(([_NOT_CLAIMED + ", ".join(unclaimed)] if unclaimed else []) + sorted(others))

    def describe(self) -> str:
        ran = self.passed + len(self.failed)
        skips = sum(self.skipped.values())
        if ran:
            text = f"{self.passed}/{ran} passed"
        elif self.refusals:
            text = f"refusal {sum(self.refusals)}/{len(self.refusals)} passed"
        else:
            return f"skipped ({self.reasons() or 'no test'})"
        if skips:
            text += f", {skips} skipped ({self.reasons()})"
        return text


class Certification:
    """Collects the kit's test outcomes per tested class and area; prints them at the end."""

    def __init__(self) -> None:
        self.outcomes: dict[str, _Outcome] = {}
        self.backends: dict[str, str] = {}  # group -> "name (capabilities)"

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            marker = item.get_closest_marker("certifies")
            if marker is not None and marker.args:
                kind = "refusal" if marker.kwargs.get("absent") is not None else "rule"
                item.user_properties.append((AREA_PROPERTY, f"{marker.args[0]}:{kind}"))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        where = props.get(AREA_PROPERTY)
        if not isinstance(where, str):
            return
        group = report.nodeid.rsplit("::", 1)[0]
        backend = props.get(BACKEND_PROPERTY)
        if isinstance(backend, str):
            self.backends[group] = backend
        area, _, kind = where.partition(":")
        outcome = self.outcomes.setdefault(report.nodeid, _Outcome(group, area, kind == "refusal"))
        if report.failed:
            outcome.result = "failed"
        elif outcome.result == "failed":
            pass
        elif report.skipped:
            outcome.result, outcome.reason = "skipped", _skip_reason(report)
        elif report.when == "call":
            outcome.result = "passed"

    def pytest_terminal_summary(self, terminalreporter: _Terminal) -> None:
        if not self.outcomes:
            return
        groups: dict[str, dict[str, _Area]] = {}
        for nodeid, outcome in self.outcomes.items():
            area = groups.setdefault(outcome.group, {}).setdefault(outcome.area, _Area())
            if outcome.refusal:
                if outcome.result in ("passed", "failed"):
                    area.refusals.append(outcome.result == "passed")
                if outcome.result == "failed":
                    area.failed.append(nodeid.rsplit("::", 1)[-1])
                continue  # a refusal check skipped because the capability is claimed: nothing to report
            if outcome.result == "passed":
                area.passed += 1
            elif outcome.result == "failed":
                area.failed.append(nodeid.rsplit("::", 1)[-1])
            elif outcome.result == "skipped":
                area.skipped[outcome.reason] += 1
        write = terminalreporter.write_line
        terminalreporter.write_sep("=", "ad-buyer-storage conformance")
        classes = Counter(group.rsplit("::", 1)[-1] for group in groups)
        for group, areas in groups.items():
            cls = group.rsplit("::", 1)[-1]
            failures = sum(len(a.failed) for a in areas.values())
            verdict = f"FAILED ({failures} failed)" if failures else "CERTIFIED"
            backend = f" [{self.backends[group]}]" if group in self.backends else ""
            write(f"ad-buyer-storage conformance: {cls if classes[cls] == 1 else group}{backend}  {verdict}")
            width = max(len(name) for name in areas)
            for name in sorted(areas, key=lambda a: AREAS.index(a) if a in AREAS else len(AREAS)):
                write(f"  {name:<{width}}  {areas[name].describe()}")
                if areas[name].failed:
                    write(f"  {'':<{width}}  failed: {', '.join(areas[name].failed)}")


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")
