"""The noxfile, run with fake sessions: the `faults` session installs the tools it lacks, so the
README's one command passes on a fresh Debian machine; every session installs from the locks."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import noxfile


class Session:
    """Records what the session would run; session.error raises, as nox's does."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, ...]] = []

    def run(self, *args: str, **kwargs: Any) -> None:
        self.commands.append(args)

    def log(self, message: str) -> None:
        pass

    def error(self, message: str) -> None:
        raise RuntimeError(message)


def install(session: Session) -> None:
    noxfile.install_fault_tools(session)  # type: ignore[arg-type]


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Tools present, and what apt-get install does: installs them, or fails like on stale lists."""
    state: dict[str, Any] = {"present": set(noxfile.FAULT_TOOLS), "lists_fresh": True, "installs": []}

    def which(tool: str) -> str | None:
        return f"/usr/bin/{tool}" if tool in state["present"] or tool == "apt-get" else None

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        state["installs"].append(tuple(argv))
        assert kwargs["env"]["DEBIAN_FRONTEND"] == "noninteractive"
        if not state["lists_fresh"]:
            return subprocess.CompletedProcess(argv, 100)  # E: Unable to locate package
        state["present"] |= {t for t, p in noxfile.FAULT_TOOLS.items() if p in argv}
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr("noxfile.shutil.which", which)
    monkeypatch.setattr("noxfile.subprocess.run", run)
    return state


def test_nothing_is_installed_when_nothing_is_missing(machine: dict[str, Any]) -> None:
    session = Session()
    install(session)
    assert machine["installs"] == []
    assert session.commands == []


def test_the_missing_packages_are_installed_once_quietly(machine: dict[str, Any]) -> None:
    machine["present"] -= {"faketime", "iptables"}
    session = Session()
    install(session)
    assert machine["installs"] == [
        ("apt-get", "install", "-y", "-qq", "--no-install-recommends", "faketime", "iptables")
    ]
    assert session.commands == []  # no apt-get update: the lists knew the packages
    install(session)  # idempotent: all there now
    assert len(machine["installs"]) == 1


def test_stale_package_lists_are_updated_once_then_the_install_retried(machine: dict[str, Any]) -> None:
    machine["present"] -= {"faketime"}
    machine["lists_fresh"] = False
    session = Session()
    with pytest.raises(RuntimeError, match="missing tools after installing faketime: faketime"):
        install(session)  # the fake retry installs nothing: the session fails
    assert session.commands == [
        ("apt-get", "update", "-qq"),
        ("apt-get", "install", "-y", "-qq", "--no-install-recommends", "faketime"),
    ]


def test_without_apt_get_it_names_the_packages(machine: dict[str, Any], monkeypatch) -> None:
    machine["present"] -= {"iptables"}
    monkeypatch.setattr("noxfile.shutil.which", lambda tool: None if tool in ("apt-get", "iptables") else tool)
    with pytest.raises(RuntimeError, match=r"install these packages .*iptables"):
        install(Session())


def test_the_topologies_session_installs_pgbouncer_and_redis_sentinel(monkeypatch) -> None:
    present = {"redis-server", "redis-cli", "psql", "runuser"}
    installs: list[tuple[str, ...]] = []

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        installs.append(tuple(argv))
        present.update(t for t, p in noxfile.TOPOLOGY_TOOLS.items() if p in argv)
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr("noxfile.shutil.which", lambda tool: tool if tool in present or tool == "apt-get" else None)
    monkeypatch.setattr("noxfile.subprocess.run", run)
    noxfile.install_fault_tools(Session(), noxfile.TOPOLOGY_TOOLS)  # type: ignore[arg-type]
    assert installs == [("apt-get", "install", "-y", "-qq", "--no-install-recommends", "pgbouncer", "redis-sentinel")]


# -- the locks every session installs from (issue: reproducible checks) --------------------------


def pins(lock: Path) -> dict[str, Version]:
    found: dict[str, Version] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith((" ", "#")):
            name, _, version = line.partition("==")
            found[canonicalize_name(name)] = Version(version.split(";")[0].strip())
    return found


def declared() -> list[Requirement]:
    """What our pyprojects ask of others: our distributions' requirements and the dev extra's."""
    return noxfile.our_requirements()


LOCKS = sorted(noxfile.REQUIREMENTS.glob("*-3.*.txt"))


def test_there_is_a_lock_per_tested_python_and_one_of_the_oldest_versions() -> None:
    names = {lock.name for lock in LOCKS}
    assert names == {f"lock-{v}.txt" for v in noxfile.TESTED_PYTHONS} | {f"oldest-{noxfile.OLDEST_PYTHON}.txt"}


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_each_lock_pins_every_requirement_within_our_ranges(lock: Path) -> None:
    """A range changed in a pyproject without `nox -s lock` fails here, not on a user's machine."""
    pinned = pins(lock)
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in pinned, f"{lock.name} does not pin {req.name}: run `nox -s lock`"
        version = pinned[name]
        assert req.specifier.contains(version, prereleases=True), f"{lock.name}: {name}=={version} not in {req}"
    assert not set(pinned) & {canonicalize_name(n) for n in noxfile.OURS}, "ours come from this tree"


def test_the_oldest_lock_holds_each_of_our_lower_bounds_exactly() -> None:
    pinned = pins(noxfile.REQUIREMENTS / f"oldest-{noxfile.OLDEST_PYTHON}.txt")
    floors = dict(line.split("==") for line in noxfile.lowest_pins())
    assert {"aiosqlite", "redis", "asyncpg", "pluggy", "pydantic", "pydantic-settings", "orjson"} <= set(floors)
    assert {name: pinned[name] for name in floors} == {name: Version(v) for name, v in floors.items()}


def test_a_requirement_without_a_lower_bound_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(noxfile, "our_requirements", lambda dev=True: [Requirement("somelib<3")])
    with pytest.raises(ValueError, match="somelib<3 has no lower bound"):
        noxfile.lowest_pins()


class Installs(Session):
    python = "3.12"

    def __init__(self) -> None:
        super().__init__()
        self.installed: list[tuple[str, ...]] = []

    def install(self, *args: str) -> None:
        self.installed.append(args)


def test_sessions_install_with_their_pythons_lock_and_fail_without_one(tmp_path, monkeypatch) -> None:
    session = Installs()
    noxfile.install_project(session)  # type: ignore[arg-type]
    assert session.installed == [("-c", str(noxfile.REQUIREMENTS / "lock-3.12.txt"), ".[dev]", noxfile.EXAMPLE_PLUGIN)]
    monkeypatch.setattr(noxfile, "REQUIREMENTS", tmp_path)
    with pytest.raises(RuntimeError, match="run `nox -s lock`"):
        noxfile.install(session, "ruff")  # type: ignore[arg-type]
