"""Every check is a session. `nox` runs the default ones; `nox -l` lists them all."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "demo"]
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
CORE = "packages/ad_buyer_storage_core"
SQLITE = "packages/ad_buyer_storage_sqlite"
EXAMPLE_PLUGIN = "tests/example_plugin"
PACKAGES = [f"{CORE}/src", f"{SQLITE}/src"]
# Backends with a conformance file of their own under tests/.
BACKENDS = ["memory", "sqlite", "example_plugin"]


def install_project(session: nox.Session) -> None:
    # The real distributions (not editable): the tests exercise what users install,
    # entry points and py.typed included.
    session.install(".[dev]", EXAMPLE_PLUGIN)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the whole test suite (conformance kit on every installed backend included)."""
    install_project(session)
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
@nox.parametrize("backend", BACKENDS)
def conformance(session: nox.Session, backend: str) -> None:
    """Run the conformance kit against one backend."""
    install_project(session)
    session.run("pytest", f"tests/test_conformance_{backend}.py", *session.posargs)


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
    session.run("mypy", "tests", "noxfile.py", "--exclude", "tests/example_plugin")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Install core + SQLite alone (no other driver) into a fresh venv and run the demo."""
    session.install(CORE, SQLITE)
    session.run(
        "python",
        "-c",
        "import importlib.util as u, sys; "
        "present = [m for m in ('redis', 'asyncpg', 'fakeredis') if u.find_spec(m)]; "
        "sys.exit(f'unexpected drivers installed: {present}' if present else 0)",
    )
    tmp = session.create_tmp()
    session.chdir(tmp)
    session.run("ad-buyer-storage", "demo", *session.posargs)
    session.run("ad-buyer-storage", "doctor")
