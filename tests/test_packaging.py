"""The distributions as users get them: the meta-package's requirements (direct references in a
clone, plain ones when published), licenses, supported Pythons, and the checks `nox -s build`
runs on every wheel and sdist (shown here to catch what they should, on fabricated archives)."""

from __future__ import annotations

import importlib.util
import io
import os
import tarfile
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import noxfile

ROOT = Path(noxfile.__file__).resolve().parent
FOLDERS = [d.folder for d in noxfile.DISTRIBUTIONS]
CORE = next(d for d in noxfile.DISTRIBUTIONS if d.folder == noxfile.CORE)
META = noxfile.DISTRIBUTIONS[0]


def load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("meta_build_under_test", ROOT / "build_support" / "meta_build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pyproject(folder: str) -> dict[str, Any]:
    return tomllib.loads((ROOT / folder / "pyproject.toml").read_text(encoding="utf-8"))


def hook_config() -> dict[str, Any]:
    config: dict[str, Any] = pyproject(".")["tool"]["hatch"]["metadata"]["hooks"]["custom"]
    return config


# The meta-package's requirements ---------------------------------------------------------------


def test_in_a_clone_our_distributions_are_direct_references_to_their_folders() -> None:
    dependencies, optional = load_hook().requirements(hook_config(), ROOT, published=False)
    assert dependencies == [
        f"ad-buyer-storage-core @ {(ROOT / noxfile.CORE).as_uri()}",
        f"ad-buyer-storage-sqlite @ {(ROOT / noxfile.SQLITE).as_uri()}",
    ]
    assert set(optional) == noxfile.META_EXTRAS
    assert optional["fast"] == [f"ad-buyer-storage-core[fast] @ {(ROOT / noxfile.CORE).as_uri()}"]
    assert f"ad-buyer-storage-core[fast,testing] @ {(ROOT / noxfile.CORE).as_uri()}" in optional["dev"]
    assert "pytest>=8.4" in optional["dev"]  # a third party's requirement is written as it is


def test_published_metadata_names_plain_requirements_at_the_trees_versions() -> None:
    versions = noxfile.our_versions()
    dependencies, optional = load_hook().requirements(hook_config(), ROOT, published=True)
    assert dependencies == [
        f"ad-buyer-storage-core>={versions['ad-buyer-storage-core']}",
        f"ad-buyer-storage-sqlite>={versions['ad-buyer-storage-sqlite']}",
    ]
    assert optional["production"] == [
        f"ad-buyer-storage-redis>={versions['ad-buyer-storage-redis']}",
        f"ad-buyer-storage-postgres>={versions['ad-buyer-storage-postgres']}",
    ]
    assert not any(" @ " in text for texts in optional.values() for text in texts)


def test_only_the_sdist_build_publishes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hook = load_hook()
    seen: list[str | None] = []

    def hatchling_build_sdist(directory: str, config_settings: object = None) -> str:
        seen.append(hook.os.environ.get(hook.PUBLISHED))
        return "ad_buyer_storage-0.1.0.tar.gz"

    monkeypatch.delenv(hook.PUBLISHED, raising=False)
    monkeypatch.setattr(hook, "hatchling_build_sdist", hatchling_build_sdist)
    assert hook.build_sdist(str(tmp_path)) == "ad_buyer_storage-0.1.0.tar.gz"
    assert seen == ["1"]
    assert hook.PUBLISHED not in hook.os.environ  # pip's wheel builds in the same process stay in tree mode
    assert hook.build_wheel.__module__ == "hatchling.build"
    assert hook.build_editable.__module__ == "hatchling.build"


def test_the_hook_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    hook = load_hook()
    with pytest.raises(ValueError, match="not in packages/"):
        hook.requirements({"dependencies": ["ad-buyer-storage-dynamodb"]}, ROOT, published=True)
    with pytest.raises(ValueError, match="bare"):
        hook.requirements({"dependencies": ["ad-buyer-storage-core>=0.1"]}, ROOT, published=True)
    with pytest.raises(ValueError, match="no packages/"):
        hook.requirements(hook_config(), tmp_path, published=True)  # neither a clone nor an sdist's PKG-INFO


# Licenses and Pythons ---------------------------------------------------------------------------


def test_every_distribution_ships_the_apache_license_it_declares() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    for folder in FOLDERS:
        assert (ROOT / folder / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes(), folder
        project = pyproject(folder)["project"]
        assert project["license"] == "Apache-2.0", folder
        assert project["license-files"] == ["LICENSE"], folder


def test_the_pythons_tested_are_the_ones_declared() -> None:
    assert noxfile.TESTED_PYTHONS[0] == noxfile.PYTHON  # the other sessions run on the oldest
    assert noxfile.tests.python == noxfile.TESTED_PYTHONS
    for folder in FOLDERS:
        project = pyproject(folder)["project"]
        assert project["requires-python"] == f">={noxfile.TESTED_PYTHONS[0]}", folder
        prefix = "Programming Language :: Python :: 3."
        declared = [f"3.{c.removeprefix(prefix)}" for c in project["classifiers"] if c.startswith(prefix)]
        assert declared == noxfile.TESTED_PYTHONS, folder


def test_pyenv_pythons_are_found_whichever_version_pyenv_has_active(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pyenv = tmp_path / "pyenv"
    for version in ["3.12.1", "3.12.10", "3.12.9", "3.13.0", "3.13.0t", "3.13-dev", "3.11.7"]:
        binary = pyenv / "versions" / version / "bin" / f"python{version[:4]}"
        binary.parent.mkdir(parents=True)
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    assert noxfile.pyenv_interpreter("3.12", pyenv) == pyenv / "versions/3.12.10/bin/python3.12"  # 10 > 9
    assert noxfile.pyenv_interpreter("3.13", pyenv) == pyenv / "versions/3.13.0/bin/python3.13"  # not t, not dev
    assert noxfile.pyenv_interpreter("3.14", pyenv) is None

    monkeypatch.setenv("PYENV_ROOT", str(pyenv))
    monkeypatch.setenv("PATH", "/usr/bin")
    monkeypatch.setattr(noxfile, "runs", lambda command: command == "python3.11")  # pyenv's active one
    links = tmp_path / "links"
    noxfile.find_interpreters(["3.11", "3.12", "3.13", "3.14"], links)
    assert sorted(p.name for p in links.iterdir()) == ["python3.12", "python3.13"]
    assert (links / "python3.12").resolve() == pyenv / "versions/3.12.10/bin/python3.12"
    assert os.environ["PATH"] == f"{links}:/usr/bin"
    noxfile.find_interpreters(["3.12"], links)  # again: links replaced, PATH not lengthened
    assert os.environ["PATH"] == f"{links}:/usr/bin"


# What `nox -s build` checks, on fabricated archives ------------------------------------------------


def metadata(requires: list[str], extras: tuple[str, ...] = ()) -> str:
    lines = ["Metadata-Version: 2.4", "Name: x", "Version: 0.1.0", "License-Expression: Apache-2.0"]
    lines += ["License-File: LICENSE", *(f"Provides-Extra: {e}" for e in extras)]
    return "\n".join(lines + [f"Requires-Dist: {r}" for r in requires]) + "\n\n"


def core_wheel(tmp_path: Path, drop: str | None = None, requires: tuple[str, ...] = ("pydantic>=2.7",)) -> Path:
    """A wheel of core as hatchling builds it (every source file, its dist-info), less `drop`."""
    info = f"{noxfile.artifact_stem(ROOT / noxfile.CORE)}.dist-info"
    source = ROOT / noxfile.CORE / "src"
    files = {
        path.relative_to(source).as_posix(): path.read_bytes()
        for path in (source / "ad_buyer_storage").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    entry_points = noxfile.declared_entry_points(ROOT / noxfile.CORE)
    files[f"{info}/entry_points.txt"] = "".join(
        f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in names.items()) + "\n"
        for group, names in entry_points.items()
    ).encode()
    files[f"{info}/METADATA"] = metadata(list(requires)).encode()
    files[f"{info}/licenses/LICENSE"] = (ROOT / "LICENSE").read_bytes()
    if drop and drop.startswith("["):  # an entry-point group
        text = files[f"{info}/entry_points.txt"].decode()
        start = text.index(drop)
        files[f"{info}/entry_points.txt"] = (text[:start] + text[text.index("\n\n", start) + 2 :]).encode()
    elif drop:
        del files[drop]
    wheel = tmp_path / f"{noxfile.artifact_stem(ROOT / noxfile.CORE)}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def test_a_complete_core_wheel_passes(tmp_path: Path) -> None:
    assert noxfile.wheel_problems(core_wheel(tmp_path), CORE, ROOT) == []


@pytest.mark.parametrize(
    ("drop", "problem"),
    [
        ("ad_buyer_storage/__init__.pyi", "no ad_buyer_storage/__init__.pyi"),
        ("ad_buyer_storage/py.typed", "no ad_buyer_storage/py.typed"),
        ("ad_buyer_storage/plugins/registry.py", "lacks ad_buyer_storage/plugins/registry.py"),
        ("ad_buyer_storage_core-0.1.0.dist-info/licenses/LICENSE", "LICENSE"),
        ("[pytest11]", "no pytest11 entry point"),
        ("[console_scripts]", "no console_scripts entry point"),
        ("[ad_buyer_storage.backends]", "registers backends ()"),
    ],
)
def test_a_wheel_lacking_what_users_need_is_refused(tmp_path: Path, drop: str, problem: str) -> None:
    problems = noxfile.wheel_problems(core_wheel(tmp_path, drop=drop), CORE, ROOT)
    assert any(problem in p for p in problems), problems


def test_a_direct_reference_in_any_wheel_is_refused(tmp_path: Path) -> None:
    wheel = core_wheel(tmp_path, requires=("pydantic @ file:///somewhere/pydantic",))
    assert any("direct reference" in p for p in noxfile.wheel_problems(wheel, CORE, ROOT))


def test_the_meta_packages_published_metadata_names_our_versions_and_its_extras() -> None:
    versions = noxfile.our_versions()
    extras = tuple(sorted(noxfile.META_EXTRAS))
    plain = [f"{name}>={version}" for name, version in versions.items()]
    assert noxfile.metadata_problems(metadata(plain, extras), "PKG-INFO", meta=True) == []
    direct = [f"ad-buyer-storage-core @ {(ROOT / noxfile.CORE).as_uri()}", *plain[1:]]
    problems = noxfile.metadata_problems(metadata(direct, extras), "PKG-INFO", meta=True)
    assert any("direct reference" in p for p in problems), problems
    stale = ["ad-buyer-storage-core>=0.0.1", *plain[1:]]
    assert any("does not ask for" in p for p in noxfile.metadata_problems(metadata(stale, extras), "x", meta=True))
    assert any("extras" in p for p in noxfile.metadata_problems(metadata(plain, extras[1:]), "x", meta=True))


def test_the_meta_packages_sdist_must_not_carry_packages(tmp_path: Path) -> None:
    base = noxfile.artifact_stem(ROOT)
    versions = noxfile.our_versions()
    pkg_info = metadata([f"{n}>={v}" for n, v in versions.items()], tuple(sorted(noxfile.META_EXTRAS)))

    def sdist(*extra: str) -> Path:
        path = tmp_path / f"{base}.tar.gz"
        with tarfile.open(path, "w:gz") as archive:
            for name, data in [("PKG-INFO", pkg_info.encode()), ("LICENSE", b"x"), ("pyproject.toml", b"")] + [
                (e, b"") for e in extra
            ]:
                member = tarfile.TarInfo(f"{base}/{name}")
                member.size = len(data)
                archive.addfile(member, io.BytesIO(data))
        return path

    assert noxfile.sdist_problems(sdist(), META, ROOT) == []
    problems = noxfile.sdist_problems(sdist("packages/ad_buyer_storage_core/pyproject.toml"), META, ROOT)
    assert problems == [f"{base}.tar.gz: ships {base}/packages/ad_buyer_storage_core/pyproject.toml"]


def test_third_party_requirements_leave_ours_and_the_extras_out(tmp_path: Path) -> None:
    requires = ("pydantic>=2.7", "ad-buyer-storage-core>=0.1.0", "orjson>=3.10; extra == 'fast'", "redis>=5.0.1")
    wheel = core_wheel(tmp_path, requires=requires)
    assert noxfile.third_party_requirements([wheel]) == ["pydantic>=2.7", "redis>=5.0.1"]


def test_in_a_clone_the_meta_package_must_take_ours_from_packages() -> None:
    dependencies, _ = load_hook().requirements(hook_config(), ROOT, published=False)
    assert noxfile.clone_problems(metadata(dependencies), "clone") == []
    plain, _ = load_hook().requirements(hook_config(), ROOT, published=True)
    assert len(noxfile.clone_problems(metadata(plain), "clone")) == 2  # core and SQLite from an index
    elsewhere = [f"ad-buyer-storage-core @ {(ROOT / 'elsewhere').as_uri()}"]
    assert noxfile.clone_problems(metadata(elsewhere), "clone") == [
        f"clone: {elsewhere[0]} is not a direct reference to {noxfile.CORE}"
    ]
