"""Every runnable Python example in the READMEs runs as written."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
READMES = [ROOT / "README.md", *sorted(ROOT.glob("packages/*/README.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _installed(readme: Path) -> bool:
    """A package README's examples need the package (``deps-oldest`` runs without the AdCP one)."""
    if readme.parent.parent.name != "packages":
        return True
    return importlib.util.find_spec(readme.parent.name) is not None


def _examples() -> list[tuple[str, str]]:
    found = []
    for readme in filter(_installed, READMES):
        for i, code in enumerate(BLOCK.findall(readme.read_text())):
            if "asyncio.run(" in code or "SyncStorage()" in code:  # a complete program, not a fragment
                found.append((f"{readme.relative_to(ROOT)}#{i}", code))
    return found


@pytest.fixture
def drop_example_schema() -> Iterator[None]:
    """The PostgreSQL example creates schema ad_buyer_example on the shared server: remove it."""
    yield
    subprocess.run(
        ["psql", "postgresql://postgres@127.0.0.1:5432/test", "-qc", "DROP SCHEMA IF EXISTS ad_buyer_example CASCADE"],
        capture_output=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(("where", "code"), _examples(), ids=[w for w, _ in _examples()])
def test_readme_example_runs(where: str, code: str, tmp_path, drop_example_schema: None) -> None:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, f"{where}:\n{result.stderr}"


def test_there_are_examples_in_every_package_readme() -> None:
    where = {w.split("#")[0] for w, _ in _examples()}
    assert {str(p.relative_to(ROOT)) for p in READMES if "packages" in str(p) and _installed(p)} <= where


def test_every_test_reliability_md_names_exists() -> None:
    """RELIABILITY.md maps each plan case to tests: a renamed or deleted test must not rot it."""
    named = set(re.findall(r"(test_[a-z0-9_]+)(?:\*)?", (ROOT / "RELIABILITY.md").read_text()))
    test_dirs = [ROOT / "tests", *ROOT.glob("packages/*/tests")]
    sources = [path for d in test_dirs for path in d.glob("*.py")]
    sources += ROOT.glob("packages/ad_buyer_storage_core/src/ad_buyer_storage/testing/*.py")
    defined = "\n".join(path.read_text() for path in sources)
    missing = []
    for name in sorted(named):
        stem = name.rstrip("_")
        is_file = any((d / f"{stem}.py").exists() for d in test_dirs)
        if not is_file and not re.search(rf"def {re.escape(stem)}", defined):
            missing.append(name)
    assert len(named) > 30
    assert not missing, missing
