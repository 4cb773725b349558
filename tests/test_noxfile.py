"""The `faults` session installs the tools it lacks, so the README's one command passes on a
fresh Debian machine: what it runs, with a fake machine (no package is installed here)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

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
