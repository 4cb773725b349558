"""The core README's "Writing a backend" guide works as written: its dbm backend, installed
through its entry point (a distribution's metadata on the path), is found by name, by URL and
by inference from its own URL setting, its ten-line test file passes the conformance kit, and
its example of a backend sharing DATABASE_URL routes as it says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "packages/ad_buyer_storage_core/README.md"
BLOCK = re.compile(r"```(?:python|toml)\n# (\S+)[^\n]*\n(.*?)```", re.S)


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """The guide's files written out, and the distribution's metadata that registers it."""
    blocks = {name: code for name, code in BLOCK.findall(README.read_text())}
    files = ("my_dbm/backend.py", "my_dbm/plugin.py", "test_my_dbm.py", "sharing.py")
    assert {*files, "pyproject.toml"} <= set(blocks), set(blocks)
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(blocks[name])
    (tmp_path / "my_dbm" / "__init__.py").write_text("")
    declared = tomllib.loads(blocks["pyproject.toml"])["project"]["entry-points"]
    dist_info = tmp_path / "my_dbm-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-dbm\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(
        "".join(f"[{group}]\n" + "".join(f"{n} = {v}\n" for n, v in eps.items()) for group, eps in declared.items())
    )
    return tmp_path


def _run(plugin_dir: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=plugin_dir,
        env={**os.environ, "PYTHONPATH": str(plugin_dir), **env},
        check=False,
    )


def test_the_guide_s_test_file_passes_the_kit(plugin_dir: Path) -> None:
    result = _run(plugin_dir, "-m", "pytest", "test_my_dbm.py", "-q", "-p", "no:cacheprovider", "-W", "error")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_its_url_setting_selects_it_like_ours(plugin_dir: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio
        from ad_buyer_storage import get_storage_backend, load_settings, open_storage
        from ad_buyer_storage.plugins.settings import choose_backend

        print(choose_backend(load_settings()).name)
        print(get_storage_backend().name)

        async def main():
            async with open_storage("dbm:///./by-url.db") as storage:
                await storage.set_deal("d1", {"n": 1})
                print(await storage.get_deal("d1"))

        asyncio.run(main())
        """
    )
    result = _run(plugin_dir, "-c", script, DBM_URL="dbm:///./x.db")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["dbm", "dbm", "{'n': 1}"]
    listing = _run(plugin_dir, "-m", "ad_buyer_storage.cli", "backends")
    assert re.search(r"dbm\s+my-dbm 0\.1\s+\[atomic, durable, expiry\]", listing.stdout), listing.stdout


def test_a_backend_sharing_database_url_is_routed_by_url_not_by_name(plugin_dir: Path) -> None:
    result = _run(plugin_dir, "sharing.py")
    assert result.returncode == 0, result.stderr
    refused, built = result.stdout.strip().split("\n")
    assert "selects the 'shareddbm' backend, but DATABASE_URL is sqlite:///./main.db" in refused
    assert built == "hybrid"
