"""No password or token ever reaches an output, however malformed the URL that carried it.

One sweep: many URL shapes (well-formed, percent-encoded, unencoded with reserved characters,
missing slashes, no scheme, unknown schemes, userless, token-only, query passwords, inside
STORAGE_ROUTES and MIRROR_*), pushed through every output a user or an operator sees:
settings and storage reprs, exceptions with their whole chain and traceback, DEBUG logs, and
every CLI command (in-process for each shape, and each command once as a real subprocess).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import quote

import pytest

from ad_buyer_storage import ConfigurationError, get_storage_backend, load_settings, open_storage
from ad_buyer_storage.cli import main
from ad_buyer_storage.kit.redaction import redact_text, redact_url, reveals_secret
from ad_buyer_storage.kit.urls import encode_credentials
from ad_buyer_storage.plugins.composition import MirrorSettings
from ad_buyer_storage.plugins.settings import load_backend_settings
from ad_buyer_storage_postgres.backend import PostgresBackend
from ad_buyer_storage_postgres.settings import PostgresSettings
from ad_buyer_storage_redis.backend import RedisBackend, parse_sentinel_url
from ad_buyer_storage_redis.settings import RedisSettings
from ad_buyer_storage_sqlite.settings import SQLiteSettings
from tests._support.servers import redis_server
from tests._support.shared import drop_pg_schema, drop_redis_prefix

# Every reserved character a pasted password may hold, between fragments that cannot appear
# by chance: a leak of any piece of it is caught, not only of the whole.
PASSWORD = "Hk9Tq@Wm4Zr:Xp7Lb/Jn3Vc#Df6Ys%Gq2Nw,Rb5Ue=Ty8Oa"
FRAGMENTS = ("hk9tq", "wm4zr", "xp7lb", "jn3vc", "df6ys", "gq2nw", "rb5ue", "ty8oa")
ENCODED = quote(PASSWORD, safe="")
DEAD = "127.0.0.1:1"  # refused at once: failures are fast

COMMANDS: tuple[tuple[str, ...], ...] = (
    ("backends",),
    ("doctor",),
    ("get", "k"),
    ("set", "k", "1", "--ttl", "5"),
    ("keys",),
    ("delete", "k"),
    ("clear", "--yes"),
    ("demo",),
    ("migrate", "--from", "{target}", "--to", "memory", "--quiet"),
    ("verify", "--from", "memory", "--to", "{target}"),
    ("mirror-repair",),
)


@dataclass
class Shape:
    label: str
    env: dict[str, str]
    #: What open_storage() and --from/--to get: the URL itself, or a backend name.
    target: str
    #: A redacted rendering that must be shown (the sweep must not pass by printing nothing).
    shown: str | None = None
    texts: list[tuple[str, str]] = field(default_factory=list)


def _db(label: str, url: str, shown: str | None = None) -> Shape:
    return Shape(label, {"DATABASE_URL": url}, url, shown)


def _redis(label: str, url: str, shown: str | None = None) -> Shape:
    return Shape(label, {"STORAGE_TYPE": "redis", "REDIS_URL": url}, url, shown)


def shapes(auth_port: int) -> list[Shape]:
    pw, enc = PASSWORD, ENCODED
    return [
        _db("postgresql, unencoded", f"postgresql://app:{pw}@{DEAD}/ads", f"postgresql://app:***@{DEAD}/ads"),
        _db("postgresql, percent-encoded", f"postgresql://app:{enc}@{DEAD}/ads", f"postgresql://app:***@{DEAD}/ads"),
        _db("postgresql+asyncpg", f"postgresql+asyncpg://app:{pw}@{DEAD}/ads", "postgresql+asyncpg://app:***@"),
        _db("postgres://", f"postgres://app:{enc}@{DEAD}/ads"),
        _db("postgresql, one slash", f"postgresql:/app:{pw}@{DEAD}/ads", f"***@{DEAD}/ads"),
        _db("postgresql, no slash", f"postgresql:app:{pw}@{DEAD}/ads"),
        _db("no scheme", f"app:{pw}@{DEAD}/ads"),
        _db("no scheme, two slashes", f"//app:{pw}@{DEAD}/ads"),
        _db("unknown scheme", f"mysql://app:{pw}@{DEAD}/ads", "mysql://app:***@"),
        _db("query password", f"postgresql://app@{DEAD}/ads?sslmode=disable&password={enc}", "password=***"),
        _db("sqlite with credentials", f"sqlite://app:{pw}@/x.db"),
        _redis("redis, userless", f"redis://:{pw}@{DEAD}/0", f"redis://:***@{DEAD}/0"),
        _redis("redis, userless, encoded", f"redis://:{enc}@{DEAD}/0"),
        _redis("redis, user", f"redis://default:{pw}@{DEAD}/0", "redis://default:***@"),
        _redis("redis, token only", f"redis://{enc}@{DEAD}/0", f"redis://***@{DEAD}/0"),
        _redis("rediss", f"rediss://:{pw}@{DEAD}/0"),
        _redis("redis+cluster", f"redis+cluster://:{pw}@{DEAD}/0"),
        _redis("rediss+cluster", f"rediss+cluster://:{enc}@{DEAD}"),
        _redis("unix socket", f"unix://:{pw}@/nonexistent/abs.sock?db=0"),
        _redis("redis, one slash", f"redis:/:{pw}@{DEAD}/0"),
        _redis("userless, no scheme", f":{pw}@{DEAD}/0"),
        _redis("redis query password", f"redis://{DEAD}/0?password={enc}", "password=***"),
        _redis("redis refusing the password", f"redis://:{enc}@127.0.0.1:{auth_port}/0", "AuthenticationError"),
        _redis("live redis", f"redis://default:{enc}@127.0.0.1:6379/0", "healthy"),
        _db("live postgres", f"postgresql://postgres:{enc}@127.0.0.1:5432/test", "postgresql://postgres:***@127.0.0.1"),
        Shape(
            "hybrid default routes",
            {"DATABASE_URL": f"postgresql://app:{pw}@{DEAD}/ads", "REDIS_URL": f"redis://:{pw}@{DEAD}/0"},
            "hybrid",
        ),
        Shape(
            "STORAGE_ROUTES a=URL,b=URL",
            {
                "STORAGE_TYPE": "hybrid",
                "STORAGE_ROUTES": f"session:=redis://:{pw}@{DEAD}/0,cache:=redis:/:{pw}@{DEAD}/1,"
                f"*=postgresql://app:{pw}@{DEAD}/ads",
            },
            "hybrid",
        ),
        Shape(
            "STORAGE_ROUTES as JSON",
            {
                "STORAGE_TYPE": "hybrid",
                "STORAGE_ROUTES": json.dumps(
                    {"session:": f"redis://:{pw}@{DEAD}/0", "": f"postgresql://app:{enc}@{DEAD}/ads"}
                ),
            },
            "hybrid",
        ),
        Shape(
            "STORAGE_ROUTES item without =",
            {"STORAGE_TYPE": "hybrid", "STORAGE_ROUTES": f"session:redis://:{pw}@{DEAD}/0,*=sqlite"},
            "hybrid",
        ),
        Shape(  # pydantic's own error quotes the inputs: it must not be chained to ours
            "invalid settings beside a URL",
            {"STORAGE_COMMAND_TIMEOUT": "-1", "STORAGE_ROUTES": f"*=redis://:{pw}@{DEAD}"},
            "hybrid",
            "STORAGE_COMMAND_TIMEOUT",
        ),
        Shape(
            "MIRROR_SECONDARY",
            {"STORAGE_TYPE": "mirror", "MIRROR_PRIMARY": "memory", "MIRROR_SECONDARY": f"redis://:{pw}@{DEAD}/0"},
            "mirror",
        ),
        Shape(
            "MIRROR_PRIMARY, one slash",
            {
                "STORAGE_TYPE": "mirror",
                "MIRROR_PRIMARY": f"postgresql:/app:{pw}@{DEAD}/ads",
                "MIRROR_SECONDARY": "memory",
            },
            "mirror",
        ),
    ]


def describe(exc: BaseException) -> str:
    """Everything an exception can show: message and repr of every link, and the traceback."""
    parts, seen, todo = [], set(), [exc]
    while todo:
        link = todo.pop()
        if id(link) in seen:
            continue
        seen.add(id(link))
        parts += [str(link), repr(link)]
        todo += [e for e in (link.__cause__, link.__context__) if e is not None]
    parts.append("".join(traceback.format_exception(exc)))
    return "\n".join(parts)


def leaks(text: str) -> list[str]:
    lowered = text.lower()
    return [f for f in (*FRAGMENTS, ENCODED.lower()) if f in lowered]


def _run_cli(argv: list[str]) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code: object = main(argv)
        except BaseException as exc:  # what the interpreter would print: the traceback
            code = describe(exc)
    return f"{out.getvalue()}\n{err.getvalue()}\n{code}"


def _in_process(shape: Shape, caplog: pytest.LogCaptureFixture) -> None:
    add = shape.texts.append
    makers: dict[str, Callable[[], object]] = {"StorageSettings": load_settings}
    for model in (MirrorSettings, RedisSettings, SQLiteSettings, PostgresSettings):
        makers[model.__name__] = partial(load_backend_settings, model, {})
    for name, make in makers.items():
        try:
            settings = make()
            add((f"repr({name})", repr(settings) + str(settings)))
        except Exception as exc:
            add((f"{name}() raised", describe(exc)))
    try:
        storage = get_storage_backend()
        add(("repr(Storage)", f"{storage!r} {storage} {storage.backend!r} {storage.backend}"))
    except Exception as exc:
        add(("get_storage_backend() raised", describe(exc)))
    else:

        async def use() -> None:
            async with storage:
                add(("ping/info", f"{await storage.ping()} {await storage.info()} {storage!r}"))

        try:
            asyncio.run(use())
        except Exception as exc:
            add(("connect raised", describe(exc)))

    async def by_target() -> None:
        async with open_storage(shape.target) as opened:
            add(("open_storage", repr(opened)))

    try:
        asyncio.run(by_target())
    except Exception as exc:
        add(("open_storage(target) raised", describe(exc)))
    for command in COMMANDS:
        argv = [a.format(target=shape.target) for a in command]
        add((f"cli {argv[0]} (in-process)", _run_cli(argv)))
    add(("logs", "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)))
    caplog.clear()


def _subprocess(shape: Shape, command: tuple[str, ...], env: dict[str, str], cwd: Path) -> tuple[str, str]:
    executable = shutil.which("ad-buyer-storage")
    argv = [executable] if executable else [sys.executable, "-m", "ad_buyer_storage.cli"]
    args = [a.format(target=shape.target) for a in command]
    done = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False,
                          env={**os.environ, **env, **shape.env})  # fmt: skip
    return f"cli {args[0]} (subprocess)", f"{done.stdout}\n{done.stderr}"


@pytest.fixture
def isolation() -> Iterator[dict[str, str]]:
    """Live-server shapes write: give them a namespace of their own, removed afterwards."""
    tag = uuid.uuid4().hex[:12]
    env = {
        "REDIS_KEY_PREFIX": f"abs-test:{tag}:",
        "POSTGRES_SCHEMA": f"abs_test_{tag}",
        "STORAGE_CONNECT_TIMEOUT": "3",
        "MIRROR_REPAIR_LOG": "./repair.log",
    }
    yield env
    drop_redis_prefix(env["REDIS_KEY_PREFIX"])
    drop_pg_schema(env["POSTGRES_SCHEMA"])


def test_no_secret_reaches_any_output(monkeypatch, caplog, tmp_path, isolation) -> None:
    caplog.set_level(logging.DEBUG, logger="ad_buyer_storage")
    with redis_server(tmp_path / "auth", "--requirepass", "another-password") as guarded:
        sweep = shapes(guarded.port)
        _sweep(sweep, monkeypatch, caplog, tmp_path, isolation)
    found = [
        f"{shape.label} / {where}: {', '.join(leaks(text))}\n    {text[:600]!r}"
        for shape in sweep
        for where, text in shape.texts
        if leaks(text)
    ]
    assert not found, "secrets leaked:\n" + "\n".join(found)
    for shape in sweep:  # the redacted forms were shown: the outputs did say something
        if shape.shown:
            assert any(shape.shown in text for _, text in shape.texts), (shape.label, shape.shown)


def _sweep(sweep: list[Shape], monkeypatch, caplog, tmp_path, isolation) -> None:
    for shape in sweep:
        with monkeypatch.context() as patch:
            for name, value in {**isolation, **shape.env}.items():
                patch.setenv(name, value)
            _in_process(shape, caplog)
    # As a user runs it, as a subprocess: each command once, on shapes spread over the sweep
    # (in-process, above, every command ran on every shape through the same code).
    jobs = [(sweep[i * len(sweep) // len(COMMANDS)], command) for i, command in enumerate(COMMANDS)]
    with ThreadPoolExecutor(4) as pool:
        runs = pool.map(lambda job: _subprocess(job[0], job[1], isolation, tmp_path), jobs)
        for (shape, _), text in zip(jobs, runs, strict=True):
            shape.texts.append(text)
    assert {c[0] for _, c in jobs} == {c[0] for c in COMMANDS}


@pytest.mark.parametrize("backend", ["redis", "postgres"])
def test_a_driver_error_quoting_the_password_is_not_chained(backend: str) -> None:
    """Drivers' own words may quote a URL; the translated error keeps them out of its chain."""
    url = f"redis://:{ENCODED}@{DEAD}/0" if backend == "redis" else f"postgresql://app:{ENCODED}@{DEAD}/db"
    errors = (RedisBackend(url) if backend == "redis" else PostgresBackend(url))._errors

    def translated(driver_error: Exception) -> BaseException:
        try:
            try:
                raise driver_error
            except Exception as exc:
                errors.raise_from(exc)
        except Exception as error:
            return error
        raise AssertionError("raise_from returned")

    for driver_error in (ValueError(f"cannot parse {url}"), ConnectionError(f"lost {PASSWORD}")):
        text = describe(translated(driver_error))
        assert not leaks(text), text


# -- issue 22: redaction by position -------------------------------------------------------------

# Query passwords holding "#" and "&": the whole value is the password, and all of it is hidden.
QUERY_URLS = [
    ("redis", f"redis://{DEAD}/0?password=Sent#1nelPw", f"redis://{DEAD}/0?password=***"),
    ("redis", f"redis://{DEAD}/0?password=Sent#1nel&Pw&db=0", f"redis://{DEAD}/0?password=***&db=0"),
    ("postgres", f"postgresql://app@{DEAD}/ads?password=Sent#1nel&Pw", f"postgresql://app@{DEAD}/ads?password=***"),
    (
        "postgres",
        f"postgresql://app@{DEAD}/ads?password=Sent&1nel#Pw&sslmode=disable",
        f"postgresql://app@{DEAD}/ads?password=***&sslmode=disable",
    ),
    (
        "redis",
        f"redis+sentinel://{DEAD}/mymaster/0?sentinel_password=Sent#1nelPw",
        f"redis+sentinel://{DEAD}/mymaster/0?sentinel_password=***",
    ),
]


def _everything_shown(backend: str, url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """repr, the connect error (whole chain) and `doctor`, for *url* as the backend's URL."""
    monkeypatch.setenv("STORAGE_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("STORAGE_TYPE", backend)
    monkeypatch.setenv("REDIS_URL" if backend == "redis" else "DATABASE_URL", url)
    storage = get_storage_backend()
    texts = [repr(storage), repr(storage.backend)]

    async def use() -> None:
        async with storage:
            pass

    try:
        asyncio.run(use())
    except Exception as exc:
        texts.append(describe(exc))
    else:
        raise AssertionError("connected to a dead port")
    texts.append(_run_cli(["doctor"]))
    return "\n".join(texts)


@pytest.mark.parametrize(("backend", "url", "shown"), QUERY_URLS)
def test_a_query_password_holding_hash_or_ampersand_is_hidden_whole(
    backend: str, url: str, shown: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert redact_url(url) == shown
    assert redact_text(f"connecting to {url} failed", url) == f"connecting to {shown} failed"
    text = _everything_shown(backend, url, monkeypatch)
    assert "1nel" not in text.lower(), text
    assert "pw&" not in text.lower(), text
    assert shown in text, text
    # Nothing else in the message was taken for the secret ("Sent" inside "sentinel").
    assert "***inel" not in text, text


@pytest.mark.parametrize(
    ("url", "encoded"),
    [
        ("redis://h/0?password=Sent#1nelPw", "redis://h/0?password=Sent%231nelPw"),
        ("redis://h/0?password=Sent#1nel&Pw&db=1", "redis://h/0?password=Sent%231nel%26Pw&db=1"),
        ("redis://h/0?db=1&password=a%41b", "redis://h/0?db=1&password=a%41b"),  # already encoded
        ("redis://h/0?password=50%off", "redis://h/0?password=50%25off"),
        ("redis://h/0?x=1#frag", "redis://h/0?x=1#frag"),  # only secret values are touched
    ],
)
def test_a_query_password_reaches_the_driver_whole(url: str, encoded: str) -> None:
    """What redaction hides is what the driver takes as the password: the URL parsing agrees."""
    assert encode_credentials(url) == encoded
    sentinel = parse_sentinel_url("redis+sentinel://h:26379/m/0?sentinel_password=Sent#1nel&Pw&db=2")
    assert sentinel.sentinel["password"] == "Sent#1nel&Pw"
    assert sentinel.master["db"] == 2


def test_a_password_with_a_hash_in_the_query_authenticates(tmp_path: Path) -> None:
    """End to end: a Redis whose password holds "#" and "&", given in ?password=."""
    password = "Sent#1nel&Pw"
    with redis_server(tmp_path / "auth", "--requirepass", password) as guarded:
        url = f"redis://127.0.0.1:{guarded.port}/0?password={password}"

        async def use() -> None:
            async with open_storage(url) as storage:
                await storage.ping()

        asyncio.run(use())


def test_a_password_that_is_a_common_word_is_not_searched_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replacing every "redis" in the message would give the password away."""
    url = f"redis://:redis@{DEAD}/0"
    text = _everything_shown("redis", url, monkeypatch)
    assert f"Redis redis://:***@{DEAD}/0" in text, text
    assert "*** ***" not in text, text
    assert "***://" not in text, text


def test_a_driver_message_quoting_a_bare_password_is_withheld_whole() -> None:
    url = f"redis://:Hunter2Pw@{DEAD}/0"
    errors = RedisBackend(url)._errors
    try:
        try:
            raise ConnectionError("AUTH hunter2pw rejected")
        except ConnectionError as exc:
            errors.raise_from(exc)
    except Exception as error:
        text = describe(error)
    assert "hunter2" not in text.lower(), text
    assert "withheld" in text, text
    assert f"redis://:***@{DEAD}/0" in text, text


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:s3cretpw",
        "postgresql://app:s3cretpw/db",
        "redis://default:s3cretpw",
        "redis://h:6379,x:s3cretpw/0",
    ],
)
def test_credentials_whose_host_was_left_out_are_hidden(url: str) -> None:
    """No `@`: `user:password` looks like `host:port`, but a port is digits; what is not is hidden."""
    assert "s3cretpw" not in redact_url(url)
    assert reveals_secret(ValueError(f"cannot open {url}"), url)
    if url.startswith("redis"):
        backend: object = RedisBackend(url)
        assert "s3cretpw" not in repr(backend)
        with pytest.raises(ConfigurationError) as refused:
            asyncio.run(RedisBackend(url).connect())
    else:
        with pytest.raises(ConfigurationError) as refused:
            PostgresBackend(url)
    assert "s3cretpw" not in str(refused.value) + repr(refused.value)
