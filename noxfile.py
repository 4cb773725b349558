"""Every check is a session. `nox` runs the default ones; `nox -l` lists them all."""

from __future__ import annotations

import os
import shutil
import subprocess

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "faults", "demo", "demo_redis", "demo_postgres"]
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
CORE = "packages/ad_buyer_storage_core"
SQLITE = "packages/ad_buyer_storage_sqlite"
REDIS = "packages/ad_buyer_storage_redis"
POSTGRES = "packages/ad_buyer_storage_postgres"
EXAMPLE_PLUGIN = "tests/example_plugin"
PACKAGES = [f"{CORE}/src", f"{SQLITE}/src", f"{REDIS}/src", f"{POSTGRES}/src"]
# Where each backend's conformance file is: its package's tests, or tests/ for core's and a stranger's.
CONFORMANCE = {
    "memory": "tests/test_conformance_memory.py",
    "sqlite": f"{SQLITE}/tests/test_sqlite_conformance.py",
    "redis": f"{REDIS}/tests/test_redis_conformance.py",
    "postgres": f"{POSTGRES}/tests/test_postgres_conformance.py",
    "hybrid": "tests/test_conformance_hybrid.py",
    "example_plugin": "tests/test_conformance_example_plugin.py",
}


def install_project(session: nox.Session) -> None:
    # The real distributions (not editable): the tests exercise what users install,
    # entry points and py.typed included.
    session.install(".[dev]", EXAMPLE_PLUGIN)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite but the reliability faults (conformance kit on every backend included)."""
    install_project(session)
    session.run("pytest", "-m", "not faults", *session.posargs)


# What the reliability suite drives, and the Debian package of each: the session installs the
# missing ones itself, so the README's one command passes on a fresh machine (root, Debian).
FAULT_TOOLS = {
    "redis-server": "redis-server",
    "redis-cli": "redis-tools",
    "psql": "postgresql-client",
    "runuser": "util-linux",
    "openssl": "openssl",
    "faketime": "faketime",
    "ip": "iproute2",
    "iptables": "iptables",
    "mount": "mount",
}


def install_fault_tools(session: nox.Session) -> None:
    """apt-get install what is missing (after one apt-get update if the package lists are stale
    or absent, as in a fresh container); then fail, never skip, if anything still is."""
    missing = sorted({package for tool, package in FAULT_TOOLS.items() if not shutil.which(tool)})
    if not missing:
        return
    if not shutil.which("apt-get"):
        session.error(f"missing tools; install these packages (Debian names): {', '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    session.log(f"installing {', '.join(missing)}")
    if subprocess.run(install, env={**os.environ, **env}, capture_output=True, check=False).returncode:
        session.run("apt-get", "update", "-qq", external=True, env=env, silent=True)
        session.run(*install, external=True, env=env, silent=True)
    still = [tool for tool in FAULT_TOOLS if not shutil.which(tool)]
    if still:
        session.error(f"missing tools after installing {', '.join(missing)}: {', '.join(still)}")


@nox.session(python=PYTHON)
def faults(session: nox.Session) -> None:
    """Run the reliability suite (root: private servers, netns, tmpfs, faketime); refresh RELIABILITY.md."""
    if os.geteuid():
        session.error("the fault suite runs as root (private servers, network namespaces, tmpfs, iptables)")
    install_fault_tools(session)
    install_project(session)
    # Only a whole run may speak for RELIABILITY.md: a selection (-k ...) would drop the other cases' figures.
    report = {} if session.posargs else {"ABS_RELIABILITY_REPORT": "RELIABILITY.md"}
    session.run("pytest", "-m", "faults", *session.posargs, env=report)


@nox.session(python=PYTHON)
@nox.parametrize("backend", list(CONFORMANCE))
def conformance(session: nox.Session, backend: str) -> None:
    """Run the conformance kit against one backend."""
    install_project(session)
    session.run("pytest", CONFORMANCE[backend], *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Check style and common bugs with ruff."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """Type-check packages (strict), tests and this noxfile with mypy."""
    install_project(session)
    session.install("mypy>=1.10", "nox")
    session.run("mypy", *PACKAGES, *session.posargs)
    tests = ["tests", f"{SQLITE}/tests", f"{REDIS}/tests", f"{POSTGRES}/tests", "conftest.py"]
    session.run("mypy", *tests, "noxfile.py", "bench", "--exclude", "tests/example_plugin")


def assert_no_driver_but(session: nox.Session, allowed: str) -> None:
    drivers = ("aiosqlite", "redis", "asyncpg", "fakeredis")
    session.run(
        "python",
        "-c",
        "import importlib.util as u, sys; "
        f"present = [m for m in {drivers!r} if m != {allowed!r} and u.find_spec(m)]; "
        "sys.exit(f'unexpected drivers installed: {present}' if present else 0)",
    )


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Install core + SQLite alone (no other driver) into a fresh venv and run the demo."""
    session.install(CORE, SQLITE)
    assert_no_driver_but(session, "aiosqlite")
    session.chdir(session.create_tmp())
    session.run("ad-buyer-storage", "demo", *session.posargs)
    session.run("ad-buyer-storage", "doctor")


@nox.session(python=PYTHON)
def demo_redis(session: nox.Session) -> None:
    """Install core + Redis alone (no aiosqlite, no asyncpg) and run the demo on the local Redis."""
    session.install(CORE, REDIS)
    assert_no_driver_but(session, "redis")
    env = {"STORAGE_TYPE": "redis", "REDIS_URL": "redis://127.0.0.1:6379/0", "REDIS_KEY_PREFIX": "ad_buyer_demo:"}
    session.chdir(session.create_tmp())
    session.run("ad-buyer-storage", "demo", *session.posargs, env=env)
    session.run("ad-buyer-storage", "doctor", env=env)
    session.run("ad-buyer-storage", "clear", "--yes", env=env)  # a shared server: leave nothing


@nox.session(python=PYTHON)
def demo_postgres(session: nox.Session) -> None:
    """Install core + PostgreSQL alone (no aiosqlite, no redis) and run the demo on the local server."""
    session.install(CORE, POSTGRES)
    assert_no_driver_but(session, "asyncpg")
    env = {
        "STORAGE_TYPE": "postgres",
        "DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
        "POSTGRES_SCHEMA": "ad_buyer_demo",
    }
    session.chdir(session.create_tmp())
    session.run("ad-buyer-storage", "demo", *session.posargs, env=env)
    session.run("ad-buyer-storage", "doctor", env=env)
    # A shared server: leave nothing behind, not even the demo's schema.
    drop = "DROP SCHEMA IF EXISTS ad_buyer_demo CASCADE"
    session.run("psql", "postgresql://postgres@127.0.0.1:5432/test", "-qc", drop, external=True)


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Benchmark every backend against its raw driver and py-key-value-aio; write bench/results/."""
    session.install(".[dev,production]", "matplotlib", "py-key-value-aio[redis,postgresql,memory]")
    session.run("python", "-m", "bench.run", *session.posargs)
