"""The ``ad-buyer-storage`` command, run as a user would (a real subprocess)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Literal

import pytest
from pydantic_settings import BaseSettings, SettingsConfigDict

from ad_buyer_storage import ConfigurationError, InvalidInputError, get_storage_backend, open_storage
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.cli import diagnose
from ad_buyer_storage.cli.main import _parser, main
from ad_buyer_storage.ops.migrate import MAX_BATCH_SIZE, migrate, verify
from ad_buyer_storage.plugins import BackendSpec
from ad_buyer_storage.plugins.registry import registry
from ad_buyer_storage.plugins.settings import choose_backend, load_settings

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
    assert '{"booked": 100, "refused": 30, "spent": "1000.00"}' in result.stdout
    assert "ok: stopped exactly at the budget" in result.stdout
    assert (tmp_path / "ad_buyer.db").exists()
    assert "removed the demo's" in result.stdout
    assert run("keys", cwd=tmp_path).stdout.strip() == "[]", "the demo leaves the store as it found it"
    again = run("demo", "--keep", cwd=tmp_path)  # idempotent: a second run gives the same result
    assert again.returncode == 0
    assert "ok: 250.00 expected" in again.stdout
    kept = run("keys", "deal:*", "--limit", "0", cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.strip() == "[]", "--limit 0 prints no key, as the API's limit=0 returns none"
    assert "deal:demo-d1" in run("keys", "deal:*", cwd=tmp_path).stdout, "--keep leaves the keys"
    assert "ok: stopped exactly at the budget" in again.stdout


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
    # The stranger's broken plugin (tests/example_plugin) is reported here, once, not warned about.
    assert result.stdout.count("'broken_example'") == 1
    assert "No module named 'ad_buyer_storage_no_such_driver'" in result.stdout
    assert result.stderr == ""


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
    assert "argument --ttl: ttl must be > 0 seconds" in refused.stderr
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


BAD_NUMBERS = [
    ("set", "k", "1", "--ttl", "0"),
    ("set", "k", "1", "--ttl", "-1"),
    ("set", "k", "1", "--ttl", "nan"),
    ("set", "k", "1", "--ttl", "inf"),
    ("set", "k", "1", "--ttl", "1e300"),
    ("set", "k", "1", "--ttl", "soon"),
    ("keys", "--limit", "-1"),
    ("keys", "--limit", "1.5"),
    ("migrate", "--from", "sqlite:///./a.db", "--to", "sqlite:///./b.db", "--batch-size", "0"),
    ("migrate", "--from", "sqlite:///./a.db", "--to", "sqlite:///./b.db", "--batch-size", "-5"),
    ("migrate", "--from", "sqlite:///./a.db", "--to", "sqlite:///./b.db", "--batch-size", "10000001"),
    ("migrate", "--from", "sqlite:///./a.db", "--to", "sqlite:///./b.db", "--batch-size", "many"),
]


@pytest.mark.parametrize("argv", BAD_NUMBERS, ids=" ".join)
def test_a_bad_number_is_one_line_and_exit_2_before_anything_is_touched(tmp_path, monkeypatch, capsys, argv) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["set", "k", "0"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert f"argument {argv[-2]}:" in err
    assert "Traceback" not in err
    assert main(["get", "k"]) == 0  # nothing was written or copied
    assert capsys.readouterr().out.strip() == "0"
    assert not (tmp_path / "b.db").exists()


def test_good_numbers_at_their_bounds_still_work(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["set", "deal:1", "1", "--ttl", "60"]) == 0
    assert main(["set", "deal:2", "2", "--ttl", "30.5"]) == 0
    capsys.readouterr()
    assert main(["keys", "--limit", "1"]) == 0
    assert json.loads(capsys.readouterr().out) == ["deal:1"]
    argv = ["migrate", "--from", "sqlite:///./ad_buyer.db", "--to", "sqlite:///./b.db", "--batch-size", "1", "--quiet"]
    assert main(argv) == 0
    assert "copied 2 of 2 keys" in capsys.readouterr().out


def test_every_numeric_option_is_validated() -> None:
    """A new numeric option must use one of the checked types, never bare int or float."""
    parser = _parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in commands.choices.items():
        for action in command._actions:
            assert action.type not in (int, float), f"{name} {action.option_strings}: use a checked type"


async def test_migrate_refuses_a_batch_size_that_cannot_work() -> None:
    async with open_storage("memory") as source, open_storage("memory") as target:
        await source.set("k", 1)
        for bad in (0, -1, MAX_BATCH_SIZE + 1, 2.5, True):
            with pytest.raises(InvalidInputError, match="batch_size"):
                await migrate(source, target, batch_size=bad)  # type: ignore[arg-type]
            with pytest.raises(InvalidInputError, match="batch_size"):
                await verify(source, target, batch_size=bad)  # type: ignore[arg-type]
        assert await target.keys() == []


# -- issue 22: settings named, never quoted; typed one-line errors ------------------------------


def test_doctor_names_a_bad_setting_and_never_quotes_it(tmp_path) -> None:
    result = run("doctor", cwd=tmp_path, env={"SQLITE_SYNCHRONOUS": "hunter2"})
    out = result.stdout + result.stderr
    assert "hunter2" not in out
    assert "input_value" not in out
    assert "SQLITE_SYNCHRONOUS" in out


class _PluggedSettings(BaseSettings):
    """A plugin's own settings model (not derived from core's SettingsBase)."""

    model_config = SettingsConfigDict(env_prefix="PLUGGED_")
    mode: Literal["fast", "safe"] = "fast"


def _reads_its_settings_itself(settings: object, **overrides: object) -> MemoryBackend:
    _PluggedSettings()  # pydantic's error quotes the input
    return MemoryBackend()


def _explodes(settings: object, **overrides: object) -> MemoryBackend:
    raise RuntimeError("the plugin's factory failed")


PLUGINS = (
    BackendSpec("plugged", _reads_its_settings_itself, settings=_PluggedSettings),
    BackendSpec("exploding", _explodes),
    BackendSpec("driverless", "ad_buyer_storage_no_such_driver.backend:create", install_hint="pip install driverless"),
)


@pytest.fixture
def plugins() -> Iterator[None]:
    for spec in PLUGINS:
        registry.register(spec)
    yield
    for spec in PLUGINS:
        registry._specs.pop(spec.name, None)


@pytest.mark.parametrize("command", [("doctor",), ("get", "k"), ("set", "k", "1"), ("keys",)], ids=" ".join)
def test_a_plugins_bad_setting_is_named_never_quoted(plugins, monkeypatch, capsys, tmp_path, command) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PLUGGED_MODE", "hunter2")
    code = main(["--backend", "plugged", *command])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert "hunter2" not in out + err
    assert "input_value" not in out + err
    assert "PLUGGED_MODE" in out + err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", [("doctor",), ("get", "k"), ("demo",)], ids=" ".join)
def test_a_plugin_factory_that_raises_is_one_typed_line_and_exit_2(plugins, capsys, command) -> None:
    code = main(["--backend", "exploding", *command])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert err.splitlines() == [
        "error: ConfigurationError: backend 'exploding' could not be built: RuntimeError: the plugin's factory failed"
    ]


def test_a_plugin_factory_that_raises_is_typed_in_the_api(plugins) -> None:
    with pytest.raises(ConfigurationError, match="'exploding' could not be built"):
        get_storage_backend("exploding")


def test_backends_says_which_backend_cannot_be_used(plugins, capsys) -> None:
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("driverless"))
    assert "UNUSABLE" in lines[at + 1], out
    assert "ad_buyer_storage_no_such_driver" in lines[at + 1]
    assert "pip install driverless" in lines[at + 1]
    assert "UNUSABLE" not in out.replace(lines[at + 1], "")  # the usable ones are not flagged


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("diskcach:///x", "unknown scheme 'diskcach'"),
        ("postgress://app:Sup3rS3cretPW@127.0.0.1:1/db", "unknown scheme 'postgress' (did you mean 'postgres'?)"),
        ("sqlit:///./x.db", "unknown scheme 'sqlit' (did you mean 'sqlite'?)"),
        ("postgresql:/app:Sup3rS3cretPW@127.0.0.1:1/db", "not a URL: expected scheme://... (did you mean postgresql"),
    ],
)
def test_a_misspelt_scheme_is_named_with_the_closest_and_the_installed_ones(
    monkeypatch, capsys, tmp_path, url, said
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["get", "k"]) == 2
    err = capsys.readouterr().err
    assert said in err
    assert "DATABASE_URL" in err
    assert "no backend is configured" not in err
    assert "installed schemes: " in err
    assert "sqlite://" in err
    assert SECRET not in err
    with pytest.raises(ConfigurationError, match="installed schemes"):
        get_storage_backend()


def test_open_storage_with_a_misspelt_scheme_suggests_the_closest() -> None:
    said = r"unknown scheme 'rediss\+clustr' \(did you mean 'rediss\+cluster'\?\)"
    with pytest.raises(ConfigurationError, match=said):
        asyncio.run(_open("rediss+clustr://h:1/0"))


async def _open(url: str) -> None:
    async with open_storage(url):
        pass


def test_an_unexpected_error_quoting_a_password_is_withheld_whole(monkeypatch, capsys) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:Hunter2Pw@127.0.0.1:1/0")

    async def buggy(args: argparse.Namespace) -> int:
        raise RuntimeError("AUTH hunter2pw failed")

    monkeypatch.setattr(diagnose, "backends", buggy)
    assert main(["backends"]) == 1
    err = capsys.readouterr().err
    assert "hunter2" not in err.lower()
    assert err == "error: (the traceback of an unexpected RuntimeError withheld: it quotes a credential)\n"


def test_an_unexpected_error_is_shown_whole_when_it_quotes_no_secret(monkeypatch, capsys) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:redis@127.0.0.1:1/0")  # a common word: never searched for

    async def buggy(args: argparse.Namespace) -> int:
        raise RuntimeError("boom at redis://:redis@127.0.0.1:1/0")

    monkeypatch.setattr(diagnose, "backends", buggy)
    assert main(["backends"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback")
    assert "RuntimeError: boom at redis://:***@127.0.0.1:1/0" in err


def test_a_url_setting_a_backend_reads_whatever_its_scheme_is_not_refused(monkeypatch) -> None:
    registry.register(BackendSpec("anyscheme", _explodes, url_setting="database_url"))  # names no scheme
    try:
        monkeypatch.setenv("DATABASE_URL", "whatever://x")
        monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
        assert choose_backend(load_settings()).name == "redis"
    finally:
        registry._specs.pop("anyscheme", None)
