"""Every Python example of the documentation site (docs/**/*.md) runs as written.

The pattern of test_readme_examples.py, extended: in the guides *every* ```python block is run,
none is a fragment. The blocks of one page share a temp folder (the current directory) and run
in order, by their first line:

* ``# test_<name>.py``: a test file, written there and run with pytest (it must pass);
* ``# <path>.py``: a module, written there for the page's later blocks to import;
* anything else: a program, run with ``python -c`` (it must exit 0).

Programs use the memory backend or SQLite files in that folder; no variable of ours from the
environment reaches them (``get_storage()`` then chooses the embedded SQLite default).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
FENCE = re.compile(r"^\s*```\s*(py|python\S*|pycon)\s*$", re.M)
FILE = re.compile(r"# ([\w/]+\.py)\n")
# Settings an example must not inherit from the machine (they would choose another store).
PREFIXES = ("STORAGE_", "SQLITE_", "REDIS_", "POSTGRES_", "SESSION_", "MIRROR_", "DATABASE_URL", "OTEL_")
TIMEOUT = 120


def _blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


def _pages_with_examples() -> list[Path]:
    return [page for page in PAGES if _blocks(page)]


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _run(command: list[str], folder: Path, where: str) -> None:
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=TIMEOUT, cwd=folder, env=_env(folder), check=False
    )
    assert result.returncode == 0, f"{where}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("page", _pages_with_examples(), ids=lambda p: str(p.relative_to(DOCS)))
def test_every_python_block_of_the_page_runs(page: Path, tmp_path: Path) -> None:
    for i, code in enumerate(_blocks(page)):
        where = f"{page.relative_to(ROOT)} block {i}"
        named = FILE.match(code)
        if named and Path(named.group(1)).name.startswith("test_"):
            path = tmp_path / named.group(1)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(code, encoding="utf-8")
            _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)], tmp_path, where)
        elif named:
            path = tmp_path / named.group(1)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(code, encoding="utf-8")
        else:
            _run([sys.executable, "-c", code], tmp_path, where)


def test_the_guides_have_examples_for_each_audience() -> None:
    for guide in ("agents", "backends", "operators"):
        assert any(page.is_relative_to(DOCS / guide) for page in _pages_with_examples()), guide


def test_no_python_block_escapes_the_runner() -> None:
    """A block fenced ```py, ```python3 or ```pycon, or indented under a list, would not be run."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        odd = [m.group(0).strip() for m in FENCE.finditer(text) if m.group(0).strip() != "```python"]
        indented = re.findall(r"^[ \t]+```python", text, re.M)
        assert not odd, f"{page.relative_to(ROOT)}: {odd}"
        assert not indented, f"{page.relative_to(ROOT)}: {indented}"


def test_every_public_name_has_its_place_in_the_reference() -> None:
    """The top-level reference page names each public name of ``__init__.pyi`` (rendered there
    with ``:::``, or listed as documented on another page): a new name cannot be left out."""
    stub = ROOT / "packages/ad_buyer_storage_core/src/ad_buyer_storage/__init__.pyi"
    names = [
        alias.asname or alias.name
        for node in ast.parse(stub.read_text(encoding="utf-8")).body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    ]
    page = (DOCS / "reference" / "ad_buyer_storage.md").read_text(encoding="utf-8")
    errors = (ROOT / "packages/ad_buyer_storage_core/src/ad_buyer_storage/errors.py").read_text(encoding="utf-8")
    missing = [
        name
        for name in names
        if f"::: ad_buyer_storage.{name}\n" not in page
        and f"`{name}`" not in page
        and not (name.endswith("Error") and f"class {name}(" in errors)
    ]
    assert len(names) > 50
    assert not missing, missing
