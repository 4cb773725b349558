"""The ``ad-buyer-storage`` command, run as a user would (a real subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

SECRET = "Sup3rS3cretPW"


def run(*args: str, cwd, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = shutil.which("ad-buyer-storage")
    argv = [command] if command else [sys.executable, "-m", "ad_buyer_storage.cli"]
    return subprocess.run(
        [*argv, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_demo_on_the_embedded_default(tmp_path) -> None:
    result = run("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "backend: sqlite" in result.stdout
    assert '"250.00"' in result.stdout
    assert "ok: 250.00 expected" in result.stdout
    assert (tmp_path / "ad_buyer.db").exists()
    again = run("demo", cwd=tmp_path)  # idempotent: a second run gives the same result
    assert again.returncode == 0
    assert "ok: 250.00 expected" in again.stdout


def test_backends_lists_plugins_and_failures(tmp_path) -> None:
    result = run("backends", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sqlite" in result.stdout
    assert "ad-buyer-storage-sqlite" in result.stdout
    assert "atomic, durable, expiry, multi_process" in result.stdout
    assert "dictstore" in result.stdout
    assert "ad-buyer-storage-example" in result.stdout
    assert "failed to load" in result.stdout
    assert "broken_example" in result.stdout


def test_doctor_healthy_shows_choice_reason_and_latency(tmp_path) -> None:
    result = run("doctor", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "chosen backend: sqlite" in result.stdout
    assert "embedded default" in result.stdout
    assert "ping:" in result.stdout
    assert "healthy" in result.stdout
    assert "sqlite_version" in result.stdout


def test_doctor_unhealthy_exits_non_zero(tmp_path) -> None:
    result = run("doctor", cwd=tmp_path, env={"DATABASE_URL": "sqlite:///./no/such/dir/x.db"})
    assert result.returncode == 1
    assert "UNHEALTHY" in result.stdout


def test_doctor_never_prints_a_password(tmp_path) -> None:
    url = f"postgresql://admin:{SECRET}@127.0.0.1:1/db"
    result = run("doctor", cwd=tmp_path, env={"STORAGE_TYPE": "sqlite", "DATABASE_URL": url})
    assert result.returncode != 0
    assert SECRET not in result.stdout + result.stderr
    assert "admin:***@127.0.0.1" in result.stdout + result.stderr


def test_operator_commands(tmp_path) -> None:
    assert run("set", "deal:1", '{"status": "active"}', cwd=tmp_path).returncode == 0
    assert run("set", "session:1", '{"u": 1}', "--ttl", "60", cwd=tmp_path).returncode == 0
    got = run("get", "deal:1", cwd=tmp_path)
    assert got.returncode == 0
    assert json.loads(got.stdout) == {"status": "active"}
    keys = run("keys", "deal:*", cwd=tmp_path)
    assert json.loads(keys.stdout) == ["deal:1"]
    assert run("delete", "deal:1", cwd=tmp_path).returncode == 0
    assert run("get", "deal:1", cwd=tmp_path).returncode == 1
    bad = run("set", "k", "not json", cwd=tmp_path)
    assert bad.returncode == 2
    assert "JSON" in bad.stderr
    refused = run("set", "k", "1", "--ttl", "0", cwd=tmp_path)
    assert refused.returncode == 2
    assert "InvalidTTLError" in refused.stderr
    assert run("clear", cwd=tmp_path).returncode == 2  # needs --yes
    cleared = run("clear", "--yes", cwd=tmp_path)
    assert cleared.returncode == 0
    assert "deleted 1 keys" in cleared.stdout  # session:1 was the last key
    assert json.loads(run("keys", cwd=tmp_path).stdout) == []


@pytest.mark.parametrize("backend", ["memory", "dictstore"])
def test_any_plugin_runs_the_demo(tmp_path, backend) -> None:
    result = run("--backend", backend, "demo", cwd=tmp_path)
    if backend == "dictstore":  # no atomics: the optimistic-concurrency step is refused, clearly
        assert result.returncode == 2
        assert "UnsupportedOperationError" in result.stderr
    else:
        assert result.returncode == 0
        assert "ok: 250.00 expected" in result.stdout
