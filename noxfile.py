"""Every check is a session. `nox` runs the default ones; `nox -l` lists them all."""

from __future__ import annotations

import configparser
import email.parser
import json
import os
import re
import shutil
import subprocess
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import nox
from packaging.requirements import Requirement  # nox's own dependency
from packaging.utils import canonicalize_name
from packaging.version import Version

nox.options.sessions = ["lint", "typecheck", "tests", "faults", "build", "demo", "demo_redis", "demo_postgres"]
nox.options.error_on_missing_interpreters = True

HERE = Path(__file__).resolve().parent
PYTHON = "3.11"  # every session but tests: the oldest Python that requires-python admits
TESTED_PYTHONS = ["3.11", "3.12", "3.13"]  # tests runs on each (tests-3.11, tests-3.12, tests-3.13)
CORE = "packages/ad_buyer_storage_core"
SQLITE = "packages/ad_buyer_storage_sqlite"
REDIS = "packages/ad_buyer_storage_redis"
POSTGRES = "packages/ad_buyer_storage_postgres"
BUYER_AGENT = "packages/ad_buyer_storage_buyer_agent"
# The AdCP SDK's stores: not in PACKAGES, because the SDK needs a newer pydantic than our floor
# (deps-oldest runs without it); the tests, typecheck, deps-latest and build sessions add it.
ADCP = "packages/ad_buyer_storage_adcp"
EXAMPLE_PLUGIN = "tests/example_plugin"
PACKAGES = [f"{CORE}/src", f"{SQLITE}/src", f"{REDIS}/src", f"{POSTGRES}/src", f"{BUYER_AGENT}/src"]
# Where each backend's conformance file is: its package's tests, or tests/ for core's and a stranger's.
CONFORMANCE = {
    "memory": "tests/test_conformance_memory.py",
    "sqlite": f"{SQLITE}/tests/test_sqlite_conformance.py",
    "redis": f"{REDIS}/tests/test_redis_conformance.py",
    "postgres": f"{POSTGRES}/tests/test_postgres_conformance.py",
    "hybrid": "tests/test_conformance_hybrid.py",
    "example_plugin": "tests/test_conformance_example_plugin.py",
}


def runs(command: str) -> bool:
    """Whether `command -c pass` works: a pyenv shim is on PATH for every installed version but
    answers only for the versions pyenv has active, and fails for the others."""
    path = shutil.which(command)
    if path is None:
        return False
    try:
        return subprocess.run([path, "-c", "pass"], capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def pyenv_interpreter(version: str, root: Path) -> Path | None:
    """The newest CPython X.Y.Z that pyenv installed under root for version "X.Y" (not a -dev or t build)."""
    found = []
    for candidate in root.glob(f"versions/{version}.*/bin/python{version}"):
        patch = re.fullmatch(rf"{re.escape(version)}\.(\d+)", candidate.parent.parent.name)
        if patch and os.access(candidate, os.X_OK):
            found.append((int(patch.group(1)), candidate))
    return max(found)[1] if found else None


def find_interpreters(versions: list[str], links: Path) -> None:
    """Make every pythonX.Y of versions findable by nox, as `pythonX.Y` on PATH.

    pyenv's shims answer only for its active versions (`pyenv global`, 3.11 on this machine), so
    `python3.12` fails although pyenv installed 3.12: nox would report the interpreter missing.
    For each version whose `pythonX.Y` does not run, the newest patch release pyenv installed is
    linked into `links`, which goes first on PATH; nothing else of pyenv's (python3, pip...) is.
    Where none is installed, nothing is done and nox says the interpreter is missing (an error).
    """
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = {}
    for version in versions:
        if not runs(f"python{version}") and (interpreter := pyenv_interpreter(version, root)):
            found[version] = interpreter
    if not found:
        return
    links.mkdir(parents=True, exist_ok=True)
    for version, interpreter in found.items():
        link = links / f"python{version}"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(interpreter)
    if str(links) not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([str(links), os.environ.get("PATH", "")])


find_interpreters(TESTED_PYTHONS, HERE / ".nox" / ".pythons")


# Exact versions of everything the checks install, one lock per Python (`nox -s lock` writes
# them from requirements/checks.in); our pyprojects keep ranges, users are not pinned.
REQUIREMENTS = HERE / "requirements"
OURS = tuple(
    f"ad-buyer-storage{part}"
    for part in ("", "-core", "-sqlite", "-redis", "-postgres", "-buyer-agent", "-adcp", "-example")
)
UV = "uv==0.13.10"  # what writes the locks (itself pinned: its resolver decides what they hold)
OLDEST_PYTHON = TESTED_PYTHONS[0]
NEWEST_PYTHON = TESTED_PYTHONS[-1]


def lock_file(python: object) -> Path:
    return REQUIREMENTS / f"lock-{python}.txt"


def install(session: nox.Session, *args: str, lock: Path | None = None) -> None:
    """pip install *args* with every third-party version taken from the session's lock."""
    lock = lock or lock_file(session.python)
    if not lock.is_file():
        session.error(f"no requirements/{lock.name}: run `nox -s lock` to write it")
    session.install("-c", str(lock), *args)


def install_project(session: nox.Session, lock: Path | None = None) -> None:
    # The real distributions (not editable): the tests exercise what users install,
    # entry points and py.typed included.
    install(session, ".[dev]", EXAMPLE_PLUGIN, lock=lock)


@nox.session(python=TESTED_PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite but the reliability faults and topologies (conformance kit on every backend
    included); the multi-process and slow tests on the oldest Python only (deps-latest runs them on the newest)."""
    install_project(session)
    install(session, f"./{ADCP}")
    marks = SUITE if session.python == TESTED_PYTHONS[0] else f"{SUITE} and {ONCE}"
    session.run("pytest", "-m", marks, *session.posargs)


SUITE = "not faults and not topologies"
# Races between processes and long runs test the stores, not the interpreter: once per default
# run (on 3.11), and again on 3.13 by deps-latest, keeping the default `nox` under 30 minutes.
ONCE = "not slow and not multiprocess"


def our_requirements(dev: bool = True) -> list[Requirement]:
    """Every third-party requirement our distributions declare, their extras included, and (dev)
    the test tools of the meta-package's `dev` extra."""
    lines = []
    if dev:
        with open(HERE / "pyproject.toml", "rb") as file:
            lines += tomllib.load(file)["tool"]["hatch"]["metadata"]["hooks"]["custom"]["optional-dependencies"]["dev"]
    for folder in (CORE, SQLITE, REDIS, POSTGRES, BUYER_AGENT):
        project = project_table(folder)
        lines += project.get("dependencies", [])
        for extra in project.get("optional-dependencies", {}).values():
            lines += extra
    return [r for r in map(Requirement, lines) if canonicalize_name(r.name) not in OURS]


def lowest_pins() -> list[str]:
    """`name==X` for each requirement `name>=X` of our distributions: the oldest versions our
    ranges admit (where the dev extra asks more of a test tool, its floor). Other test tools
    are the newest that resolve with these."""
    runtime = {canonicalize_name(r.name) for r in our_requirements(dev=False)}
    pins: dict[str, str] = {}
    for req in our_requirements():
        if canonicalize_name(req.name) not in runtime:
            continue
        floors = [spec.version for spec in req.specifier if spec.operator == ">="]
        if not floors:
            raise ValueError(f"{req} has no lower bound: say which oldest version it supports")
        name = canonicalize_name(req.name)
        pins[name] = max([floors[0], pins.get(name, floors[0])], key=Version)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def adcp_floor_pins() -> list[str]:
    """`adcp==X` for the adcp package's `adcp>=X`: the locks hold the SDK release the package's
    range starts at (whose own tests `adcp-conformance` then runs); deps-latest the newest."""
    for line in project_table(ADCP)["dependencies"]:
        req = Requirement(line)
        floors = [spec.version for spec in req.specifier if spec.operator == ">="]
        if canonicalize_name(req.name) == "adcp" and floors:
            return [f"adcp=={floors[0]}"]
    raise ValueError(f"{ADCP}/pyproject.toml does not require adcp>=X")


def compile_lock(session: nox.Session, python: str, output: Path, *options: str, adcp: bool = True) -> None:
    """uv pip compile requirements/checks.in (and adcp.in, the AdCP SDK's stores and what their
    checks need, unless *adcp* is false) for *python* into *output* (ours left out: they are
    installed from this tree)."""
    skip = [arg for name in OURS for arg in ("--no-emit-package", name)]
    session.run(
        "uv",
        "pip",
        "compile",
        "--quiet",
        "--python-version",
        python,
        "--no-header",
        *skip,
        *options,
        "--output-file",
        str(output),
        str((REQUIREMENTS / "checks.in").relative_to(HERE)),
        *([str((REQUIREMENTS / "adcp.in").relative_to(HERE))] if adcp else []),
        env={"UV_NO_CONFIG": "1"},
    )


@nox.session(python=PYTHON, default=False)
def lock(session: nox.Session) -> None:
    """Write requirements/lock-3.X.txt (newest versions that resolve) and oldest-3.11.txt (our lowest bounds)."""
    session.install(UV)
    # The AdCP SDK at the floor of the adcp package's range (deps-latest takes the newest).
    adcp_floor = Path(session.create_tmp()) / "adcp-floor.txt"
    adcp_floor.write_text("\n".join(adcp_floor_pins()) + "\n", encoding="utf-8")
    for python in TESTED_PYTHONS:
        compile_lock(session, python, lock_file(python), "--upgrade", "--constraint", str(adcp_floor), *session.posargs)
    floors = Path(session.create_tmp()) / "lowest.txt"
    floors.write_text("\n".join(lowest_pins()) + "\n", encoding="utf-8")
    oldest = REQUIREMENTS / f"oldest-{OLDEST_PYTHON}.txt"
    # Without the AdCP SDK: it needs pydantic>=2.13, above core's floor (2.7) that this lock tests.
    compile_lock(session, OLDEST_PYTHON, oldest, "--upgrade", "--constraint", str(floors), *session.posargs, adcp=False)


def check_with(session: nox.Session, lock: Path, *tests: str, adcp: bool = False) -> None:
    """Type-check our packages and run *tests* (the suite by default) with the versions of *lock*
    (and the AdCP SDK's stores, with *adcp*: their tests are not collected without the SDK)."""
    install_project(session, lock=lock)
    install(session, "mypy", *([f"./{ADCP}"] if adcp else []), lock=lock)
    session.run("pip", "freeze", "--exclude-editable")  # the log says what ran
    session.run("mypy", *PACKAGES, *([f"{ADCP}/src"] if adcp else []))
    session.run("pytest", "-m", SUITE, *tests, *session.posargs)


@nox.session(name="deps-oldest", python=OLDEST_PYTHON, default=False)
def deps_oldest(session: nox.Session) -> None:
    """Type-check and test with the oldest version of every dependency our pyprojects allow."""
    check_with(session, REQUIREMENTS / f"oldest-{OLDEST_PYTHON}.txt")


@nox.session(name="deps-latest", python=NEWEST_PYTHON, default=False)
def deps_latest(session: nox.Session) -> None:
    """Type-check and test with the newest version of every dependency the index serves today."""
    session.install(UV)
    latest = Path(session.create_tmp()) / "latest.txt"
    compile_lock(session, NEWEST_PYTHON, latest, "--upgrade", "--no-cache")
    check_with(session, latest, adcp=True)


# The redis-py majors our range admits between the oldest (deps-oldest) and the newest (the locks).
REDIS_BETWEEN = ["6.4.0", "7.1.1"]  # 7.2-7.4 are excluded (see its pyproject)


@nox.session(name="deps-redis", python=PYTHON, default=False)
@nox.parametrize("redis", REDIS_BETWEEN)
def deps_redis(session: nox.Session, redis: str) -> None:
    """Type-check and run the Redis tests with each redis-py major between our oldest and newest."""
    lock = Path(session.create_tmp()) / "lock.txt"
    pinned = [line for line in lock_file(PYTHON).read_text().splitlines() if not line.startswith("redis==")]
    lock.write_text("\n".join([*pinned, f"redis=={redis}"]) + "\n", encoding="utf-8")
    check_with(session, lock, REDIS, "tests/test_conformance_hybrid.py", "tests/test_topology_settings.py")


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


# The topology suite's servers besides the fault suite's: a pooler in front of PostgreSQL, sentinels.
TOPOLOGY_TOOLS = {
    "redis-server": "redis-server",
    "redis-cli": "redis-tools",
    "redis-sentinel": "redis-sentinel",
    "psql": "postgresql-client",
    "runuser": "util-linux",
    "pgbouncer": "pgbouncer",
}


def install_fault_tools(session: nox.Session, tools: dict[str, str] | None = None) -> None:
    """apt-get install what is missing of *tools* (FAULT_TOOLS by default; after one apt-get
    update if the package lists are stale or absent, as in a fresh container); then fail, never
    skip, if anything still is."""
    tools = FAULT_TOOLS if tools is None else tools
    missing = sorted({package for tool, package in tools.items() if not shutil.which(tool)})
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
    still = [tool for tool in tools if not shutil.which(tool)]
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
def topologies(session: nox.Session) -> None:
    """Run the production topology suite (root: PgBouncer, a streaming standby, Sentinel, Cluster)."""
    if os.geteuid():
        session.error("the topology suite runs as root (private PostgreSQL servers run as the postgres user)")
    install_fault_tools(session, TOPOLOGY_TOOLS)
    install_project(session)
    session.run("pytest", "-m", "topologies", *session.posargs)


@nox.session(python=PYTHON)
@nox.parametrize("backend", list(CONFORMANCE))
def conformance(session: nox.Session, backend: str) -> None:
    """Run the conformance kit against one backend."""
    install_project(session)
    session.run("pytest", CONFORMANCE[backend], *session.posargs)


@nox.session(name="buyer-agent", python=PYTHON, default=False)
@nox.parametrize("backend", ["memory", "sqlite", "postgres", "redis", "hybrid"])
def buyer_agent(session: nox.Session, backend: str) -> None:
    """Run buyer-agent v2.4.2's own storage tests, unchanged, against our facade on one backend.

    Needs a checkout of IABTechLab/buyer-agent at 8a8dc2a: `nox -s buyer-agent -- PATH [pytest args]`
    or BUYER_AGENT_CHECKOUT=PATH (CI has no GitHub: without one the session skips)."""
    args = list(session.posargs)
    checkout = args.pop(0) if args and not args[0].startswith("-") else os.environ.get("BUYER_AGENT_CHECKOUT")
    if not checkout:
        session.skip("no buyer-agent checkout: `nox -s buyer-agent -- PATH` or BUYER_AGENT_CHECKOUT=PATH")
    if not (Path(checkout) / "src" / "ad_buyer" / "storage").is_dir():
        session.error(f"{checkout} is not a buyer-agent checkout (no src/ad_buyer/storage)")
    install(session, CORE, SQLITE, REDIS, POSTGRES, BUYER_AGENT)
    # What upstream's storage tests import (its pytest tools and the runtime modules on their
    # import path); its full dependency set (CrewAI...) and its GitHub-only wire library are not.
    upstream_needs = ["pytest", "pytest-asyncio", "pydantic", "pydantic-settings", "httpx", "fastapi", "pyyaml"]
    install(session, *upstream_needs, "python-dotenv")
    runner = f"{BUYER_AGENT}/tools/run_upstream.py"
    session.run("python", runner, checkout, "--backend", backend, *args)


@nox.session(python=PYTHON)
def differential(session: nox.Session) -> None:
    """Run the differential suite long: 20,000 random programs on every backend, answers compared."""
    install_project(session)
    env = {"DIFFERENTIAL_EXAMPLES": os.environ.get("DIFFERENTIAL_EXAMPLES", "20000")}
    session.run("pytest", "tests/test_differential.py", "-p", "no:cacheprovider", *session.posargs, env=env)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Check style and common bugs with ruff."""
    install(session, "ruff")
    session.run("ruff", "check", ".", *session.posargs)
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """Type-check packages (strict), tests, this noxfile and the build backend with mypy."""
    install_project(session)
    install(session, "mypy", "nox", f"./{ADCP}")
    session.run("mypy", *PACKAGES, f"{ADCP}/src", *session.posargs)
    tests = [
        "tests",
        f"{SQLITE}/tests",
        f"{REDIS}/tests",
        f"{POSTGRES}/tests",
        f"{BUYER_AGENT}/tests",
        f"{ADCP}/tests",
        "conftest.py",
    ]
    session.run("mypy", *tests, "noxfile.py", "bench", "build_support", "--exclude", "tests/example_plugin")


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
    install(session, CORE, SQLITE)
    assert_no_driver_but(session, "aiosqlite")
    session.chdir(session.create_tmp())
    session.run("ad-buyer-storage", "demo", *session.posargs)
    session.run("ad-buyer-storage", "doctor")


@nox.session(python=PYTHON)
def demo_redis(session: nox.Session) -> None:
    """Install core + Redis alone (no aiosqlite, no asyncpg) and run the demo on the local Redis."""
    install(session, CORE, REDIS)
    assert_no_driver_but(session, "redis")
    env = {"STORAGE_TYPE": "redis", "REDIS_URL": "redis://127.0.0.1:6379/0", "REDIS_KEY_PREFIX": "ad_buyer_demo:"}
    session.chdir(session.create_tmp())
    session.run("ad-buyer-storage", "demo", *session.posargs, env=env)
    session.run("ad-buyer-storage", "doctor", env=env)
    session.run("ad-buyer-storage", "clear", "--yes", env=env)  # a shared server: leave nothing


@nox.session(python=PYTHON)
def demo_postgres(session: nox.Session) -> None:
    """Install core + PostgreSQL alone (no aiosqlite, no redis) and run the demo on the local server."""
    install(session, CORE, POSTGRES)
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


class Distribution(NamedTuple):
    """One distribution as a user downloads it, and what its wheel must carry."""

    folder: str
    package: str | None  # the import package its wheel ships; None: the meta-package ships no code
    carries: tuple[str, ...]  # files of that package its wheel must hold, beside its modules
    groups: tuple[str, ...]  # entry-point groups its wheel must declare
    backends: tuple[str, ...]  # the backends it registers (ad_buyer_storage.backends)
    driver: str | None  # the one driver module installing it alone brings


BACKENDS_GROUP = "ad_buyer_storage.backends"
DRIVERS = ("aiosqlite", "redis", "asyncpg")
DISTRIBUTIONS = [
    Distribution(".", None, (), (), (), None),
    Distribution(
        CORE,
        "ad_buyer_storage",
        # __init__.pyi is read at run time: it lists the public names (`import ad_buyer_storage`).
        ("py.typed", "__init__.pyi"),
        ("console_scripts", "pytest11", BACKENDS_GROUP),
        ("memory", "hybrid", "mirror"),
        None,
    ),
    Distribution(SQLITE, "ad_buyer_storage_sqlite", ("py.typed",), (BACKENDS_GROUP,), ("sqlite",), "aiosqlite"),
    Distribution(REDIS, "ad_buyer_storage_redis", ("py.typed",), (BACKENDS_GROUP,), ("redis",), "redis"),
    Distribution(POSTGRES, "ad_buyer_storage_postgres", ("py.typed",), (BACKENDS_GROUP,), ("postgres",), "asyncpg"),
    Distribution(BUYER_AGENT, "ad_buyer_storage_buyer_agent", ("py.typed",), (), (), None),
    Distribution(ADCP, "ad_buyer_storage_adcp", ("py.typed",), (), (), None),
]
META_EXTRAS = {"redis", "postgres", "production", "buyer-agent", "fast", "otel", "dev", "adcp"}


def project_table(folder: str | Path) -> dict[str, Any]:
    with open(HERE / folder / "pyproject.toml", "rb") as file:  # HERE / an absolute path: that path
        project: dict[str, Any] = tomllib.load(file)["project"]
    return project


def artifact_stem(folder: str | Path) -> str:
    """`ad_buyer_storage_core-0.1.0`: how sdists and wheels of the folder's distribution begin."""
    project = project_table(folder)
    return f"{re.sub(r'[-_.]+', '_', project['name']).lower()}-{project['version']}"


def our_versions() -> dict[str, str]:
    """Canonical name -> version of each of our distributions but the meta-package."""
    return {
        canonicalize_name(project["name"]): project["version"]
        for project in (project_table(d.folder) for d in DISTRIBUTIONS if d.package)
    }


def metadata_problems(text: str, where: str, meta: bool) -> list[str]:
    """What is wrong in core metadata (PKG-INFO, METADATA) that an index or a user would see."""
    message = email.parser.Parser().parsestr(text)
    problems = []
    if message["License-Expression"] != "Apache-2.0" or "LICENSE" not in (message.get_all("License-File") or []):
        problems.append(f"{where}: no Apache-2.0 License-Expression with its License-File LICENSE")
    requirements = [Requirement(line) for line in message.get_all("Requires-Dist") or []]
    problems += [f"{where}: a direct reference, which an index refuses: {r}" for r in requirements if r.url]
    if meta:
        versions = our_versions()
        ours = {canonicalize_name(r.name): r for r in requirements if canonicalize_name(r.name) in versions}
        problems += [
            f"{where}: {req} does not ask for {name}>={versions[name]}"
            for name, req in ours.items()
            if str(req.specifier) != f">={versions[name]}"
        ]
        if set(ours) != set(versions):
            problems.append(f"{where}: names {sorted(ours)} of ours, not {sorted(versions)}")
        if set(message.get_all("Provides-Extra") or []) != META_EXTRAS:
            problems.append(f"{where}: extras {message.get_all('Provides-Extra')}, not {sorted(META_EXTRAS)}")
    return problems


def clone_problems(text: str, where: str) -> list[str]:
    """What is wrong in the meta-package's metadata as pip builds it in a clone (`pip install -e .`,
    `pip install ".[dev]"`): each of our distributions must be a direct reference to its folder."""
    folders = {canonicalize_name(project_table(d.folder)["name"]): d.folder for d in DISTRIBUTIONS if d.package}
    problems = []
    for line in email.parser.Parser().parsestr(text).get_all("Requires-Dist") or []:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name in folders and req.url != (HERE / folders[name]).as_uri():
            problems.append(f"{where}: {line} is not a direct reference to {folders[name]}")
    return problems


def declared_entry_points(folder: str | Path) -> dict[str, dict[str, str]]:
    project = project_table(folder)
    declared = dict(project.get("entry-points", {}))
    if project.get("scripts"):
        declared["console_scripts"] = project["scripts"]
    return declared


def wheel_problems(wheel: Path, dist: Distribution, root: Path) -> list[str]:
    """What the wheel lacks: its license, entry points, package files (py.typed, __init__.pyi...)."""
    info = f"{artifact_stem(root / dist.folder)}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        read = {name: archive.read(name) for name in names if name.startswith(info)}
    problems = []
    if read.get(f"{info}/licenses/LICENSE") != (root / "LICENSE").read_bytes():
        problems.append(f"{wheel.name}: no {info}/licenses/LICENSE, or not the project's")
    problems += metadata_problems(read[f"{info}/METADATA"].decode(), wheel.name, meta=dist.package is None)
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # entry-point names keep their case
    parser.read_string(read.get(f"{info}/entry_points.txt", b"").decode())
    carried = {group: dict(parser[group]) for group in parser.sections()}
    if carried != declared_entry_points(root / dist.folder):
        problems.append(f"{wheel.name}: entry points {carried}, not its pyproject's")
    problems += [f"{wheel.name}: no {group} entry point" for group in dist.groups if not carried.get(group)]
    backends = tuple(sorted(carried.get(BACKENDS_GROUP, {})))
    if backends != tuple(sorted(dist.backends)):
        problems.append(f"{wheel.name}: registers backends {backends}, not {sorted(dist.backends)}")
    if dist.package is None:
        problems += [f"{wheel.name}: the meta-package ships {name}" for name in names if not name.startswith(info)]
        return problems
    problems += [f"{wheel.name}: no {dist.package}/{f}" for f in dist.carries if f"{dist.package}/{f}" not in names]
    source = root / dist.folder / "src"
    expected = {
        path.relative_to(source).as_posix()
        for path in (source / dist.package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    shipped = {name for name in names if name.startswith(f"{dist.package}/")}
    problems += [f"{wheel.name}: lacks {name}" for name in sorted(expected - shipped)]
    problems += [f"{wheel.name}: ships {name}, which is not in its sources" for name in sorted(shipped - expected)]
    return problems


def sdist_problems(sdist: Path, dist: Distribution, root: Path) -> list[str]:
    """What the sdist lacks (PKG-INFO, LICENSE, pyproject.toml); the meta-package's holds no packages/."""
    base = artifact_stem(root / dist.folder)
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
        pkg_info = archive.extractfile(f"{base}/PKG-INFO") if f"{base}/PKG-INFO" in names else None
        metadata = pkg_info.read().decode() if pkg_info else ""
    needed = [f"{base}/{name}" for name in ("PKG-INFO", "LICENSE", "pyproject.toml")]
    problems = [f"{sdist.name}: no {name}" for name in needed if name not in names]
    problems += metadata_problems(metadata, f"{sdist.name} PKG-INFO", meta=dist.package is None)
    if dist.package is None:
        problems += [f"{sdist.name}: ships {name}" for name in sorted(names) if name.startswith(f"{base}/packages")]
    return problems


def third_party_requirements(wheels: list[Path]) -> list[str]:
    """What these wheels require (no extra) that is not ours: it comes from the registry."""
    found = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            message = email.parser.Parser().parsestr(archive.read(name).decode())
        for line in message.get_all("Requires-Dist") or []:
            req = Requirement(line)
            if not canonicalize_name(req.name).startswith("ad-buyer-storage") and not (
                req.marker and "extra" in str(req.marker)
            ):
                found.append(line)
    return sorted(set(found))


# Run in each venv that holds one distribution alone: every backend it registers resolves
# through the registry, no plugin fails, no driver but its own is there, its typing files are.
PROBE = """
import importlib.metadata, importlib.util, json, pathlib, sys
import ad_buyer_storage
from ad_buyer_storage.plugins.registry import registry
want = json.loads(sys.argv[1])
specs, failures = registry.discover()
assert not failures, failures
assert sorted(specs) == sorted(want["backends"]), (sorted(specs), want["backends"])
for name in want["backends"]:
    assert callable(registry.get(name).load_factory()), name
drivers = sorted(m for m in want["all_drivers"] if importlib.util.find_spec(m))
assert drivers == want["drivers"], f"drivers installed: {drivers}, expected {want['drivers']}"
for package in want["packages"]:
    where = pathlib.Path(importlib.util.find_spec(package).origin).parent
    assert (where / "py.typed").is_file(), f"{package}: no py.typed"
assert pathlib.Path(ad_buyer_storage.__file__).with_suffix(".pyi").is_file()
assert "ad_buyer_storage" in {ep.name for ep in importlib.metadata.entry_points(group="pytest11")}
print("alone:", ", ".join(f"{n} ({specs[n].distribution})" for n in sorted(specs)), "| drivers:", drivers or "none")
"""


def install_alone(
    session: nox.Session, venv: Path, dist_dir: Path, asked: Distribution, present: list[Distribution]
) -> None:
    """A fresh venv where pip is asked for one distribution of ours; present is what it must then hold
    (core, the asked one, what it requires). Third-party requirements come from the registry, ours
    from dist_dir only: never an index (--no-index, and no pip configuration with its find-links)."""
    session.run("python", "-m", "venv", str(venv), silent=True)
    python = str(venv / "bin" / "python")
    wheels = [dist_dir / f"{artifact_stem(d.folder)}-py3-none-any.whl" for d in present]
    if third := third_party_requirements(wheels):
        lock = ["-c", str(lock_file(session.python))]
        session.run(python, "-m", "pip", "install", "--quiet", *lock, *third, external=True, silent=True)
    only_ours = {"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": str(dist_dir), "PIP_NO_INDEX": "1"}
    project = project_table(asked.folder)
    pip = [python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(dist_dir)]
    session.run(*pip, f"{project['name']}=={project['version']}", external=True, env=only_ours, silent=True)
    want = {
        "backends": [name for d in present for name in d.backends],
        "drivers": sorted(d.driver for d in present if d.driver),
        "all_drivers": DRIVERS,
        "packages": [d.package for d in present if d.package],
    }
    probe = venv / "probe.py"
    probe.write_text(PROBE, encoding="utf-8")
    session.run(python, str(probe), json.dumps(want), external=True)
    session.run(str(venv / "bin" / "ad-buyer-storage"), "backends", external=True, silent=True)


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """Build every sdist and wheel, check them (twine, contents, no direct references) and install each alone."""
    install(session, "build", "twine", "packaging")
    tmp = Path(session.create_tmp())
    dist_dir = tmp / "dist"
    shutil.rmtree(dist_dir, ignore_errors=True)
    shutil.rmtree(tmp / "alone", ignore_errors=True)
    for dist in DISTRIBUTIONS:
        # sdist, then the wheel built from it: what `python -m build` publishes.
        session.run("python", "-m", "build", "--outdir", str(dist_dir), dist.folder, silent=True)
    session.run("twine", "check", "--strict", *sorted(str(p) for p in dist_dir.iterdir()))
    problems = []
    for dist in DISTRIBUTIONS:
        stem = artifact_stem(dist.folder)
        problems += wheel_problems(dist_dir / f"{stem}-py3-none-any.whl", dist, HERE)
        problems += sdist_problems(dist_dir / f"{stem}.tar.gz", dist, HERE)
    # And what pip builds in a clone (`pip install -e .`: the meta-package's wheel straight from
    # the tree) takes ours from packages/, never from an index.
    clone = tmp / "clone"
    shutil.rmtree(clone, ignore_errors=True)
    session.run("python", "-m", "build", "--wheel", "--outdir", str(clone), ".", silent=True)
    with zipfile.ZipFile(clone / f"{artifact_stem('.')}-py3-none-any.whl") as archive:
        problems += clone_problems(archive.read(f"{artifact_stem('.')}.dist-info/METADATA").decode(), "clone")
    if problems:
        session.error("the distributions are not what users should get:\n  " + "\n  ".join(problems))
    session.log(f"{len(DISTRIBUTIONS)} sdists and wheels carry their metadata, license, entry points and files")
    meta, core, *backends = DISTRIBUTIONS
    install_alone(session, tmp / "alone" / "core", dist_dir, core, [core])
    for backend in backends:
        install_alone(session, tmp / "alone" / Path(backend.folder).name, dist_dir, backend, [core, backend])
    # The meta-package's plain requirements resolve, to our wheels: core + SQLite.
    sqlite = next(d for d in backends if d.folder == SQLITE)
    install_alone(session, tmp / "alone" / "meta", dist_dir, meta, [meta, core, sqlite])


@nox.session(python=PYTHON, default=False)
def docs(session: nox.Session) -> None:
    """Build the documentation site (mkdocs build --strict) into the session's tmp; posargs go to mkdocs."""
    tools = ["mkdocs", "mkdocs-material", "mkdocstrings[python]", "ruff"]  # with ruff, mkdocstrings formats signatures
    install(session, f"{CORE}[otel,testing]", SQLITE, REDIS, POSTGRES, *tools)
    site = Path(session.create_tmp()) / "site"
    # A warning (a broken link, a docstring mkdocstrings cannot read) fails the build.
    env = {"NO_MKDOCS_2_WARNING": "1"}  # Material's notice about its successor, printed on every build
    session.run("mkdocs", "build", "--strict", "--clean", "--site-dir", str(site), *session.posargs, env=env)
    # The docstrings' reST roles are rewritten for Markdown (docs/_griffe/rest_roles.py): none may show raw.
    pages = site.rglob("*.html")
    raw = [str(page.relative_to(site)) for page in pages if DOCSTRING_ROLE.search(page.read_text("utf-8"))]
    if raw:
        session.error(f"reST roles left raw in {', '.join(sorted(raw))}")
    session.log(f"site built in {site}")


DOCSTRING_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):(?:`|<code>)")


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Benchmark every backend against its raw driver and py-key-value-aio; write bench/results/."""
    install(session, ".[dev,production]", "matplotlib", "py-key-value-aio[redis,postgresql,memory]")
    install(session, f"./{ADCP}", "psycopg[binary]", "psycopg-pool")  # --sections adcp
    session.run("python", "-m", "bench.run", *session.posargs)


@nox.session(name="adcp-conformance", python=PYTHON, default=False)
def adcp_conformance(session: nox.Session) -> None:
    """The AdCP SDK's own store tests (from its sdist, unchanged) against our adapters, on memory,
    SQLite, Redis, PostgreSQL and hybrid (packages/ad_buyer_storage_adcp/conformance)."""
    install_project(session)
    install(session, f"./{ADCP}", "psycopg[binary]", "psycopg-pool", "asgi-lifespan")
    tmp = Path(session.create_tmp())
    sdist_dir = tmp / "sdist"
    shutil.rmtree(sdist_dir, ignore_errors=True)
    # The sdist of the release installed (the lock's): its tests match the code they test.
    version = session.run("python", "-c", "import importlib.metadata as m; print(m.version('adcp'))", silent=True)
    sdk = f"adcp=={str(version).strip()}"
    session.run("pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps", sdk, "-d", str(sdist_dir))
    (sdist,) = sdist_dir.glob("adcp-*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(sdist_dir, filter="data")
    (tests,) = sdist_dir.glob("adcp-*/tests")
    conformance = f"{ADCP}/conformance"
    session.run(
        "pytest", "-c", f"{conformance}/pytest.ini", "--rootdir", conformance, conformance, *session.posargs,
        env={"ADCP_SDK_TESTS": str(tests)},
    )  # fmt: skip
