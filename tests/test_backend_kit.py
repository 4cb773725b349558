"""The backend kit (ad_buyer_storage.kit), module by module, without servers.

Each kit module is what all three of our backends lean on, so each rule it promises is pinned
here on its own: which calls are sent again, which errors are chained, where a scan's pages
start and stop, when a purge stops, which names are identifiers, what a subscriber receives.
The backends' own predicates (which redis-py and asyncpg errors are which) are checked too.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg
import pytest
from redis import exceptions as redis_errors

from ad_buyer_storage.contract import compile_glob
from ad_buyer_storage.errors import (
    AuthenticationError,
    BackendError,
    BusyError,
    ConfigurationError,
    NotConnectedError,
    OutcomeUnknownError,
    StorageError,
    StorageTimeoutError,
    UnavailableError,
)
from ad_buyer_storage.kit.errormap import ErrorMap, NoConnection, driver_message, in_flight_error, unchained
from ad_buyer_storage.kit.identifiers import check_identifier
from ad_buyer_storage.kit.retry import RetryPolicy
from ad_buyer_storage.kit.scan import Page, scan_pages
from ad_buyer_storage.kit.seen import SeenKeys
from ad_buyer_storage.kit.subscription import Deliver, queue_subscription
from ad_buyer_storage.kit.sweeper import purge_in_batches
from ad_buyer_storage_postgres.backend import PostgresBackend
from ad_buyer_storage_redis.backend import RedisBackend

SECRET = "hunter2-S3cret"
URL = f"redis://:{SECRET}@db.example:6379/0"


# -- a toy driver ----------------------------------------------------------------------------
class DriverError(Exception):
    pass


class Lost(DriverError):
    """The connection broke under the call."""


class Refused(Lost):
    """Refused while connecting: never sent."""


class Slow(DriverError):
    """No answer in time."""


class Deadlock(DriverError):
    """The server rolled the call back."""


class BadPassword(DriverError):
    pass


def translate(exc: BaseException, /, *, outcome_unknown: bool) -> StorageError:
    """A translator as a backend writes one: returns, never raises."""
    if isinstance(exc, NoConnection):
        return unchained(BusyError(str(exc)))
    if isinstance(exc, BadPassword):
        return unchained(AuthenticationError("wrong password"))
    if isinstance(exc, (Lost, Slow)) and outcome_unknown:
        return OutcomeUnknownError(f"unknown: {exc}")
    if isinstance(exc, Slow):
        return StorageTimeoutError(str(exc))
    if isinstance(exc, Lost):
        return UnavailableError(str(exc))
    return BackendError(f"driver: {exc}")


ERRORS = ErrorMap(translate, (DriverError,), secrets=(URL,))


def raised(block: Callable[[], object]) -> BaseException:
    try:
        block()
    except BaseException as exc:
        return exc
    raise AssertionError("nothing raised")


def fail(exc: BaseException) -> Callable[[], None]:
    def block() -> None:
        with ERRORS.mapped():
            raise exc

    return block


# -- errormap --------------------------------------------------------------------------------
def test_a_driver_error_leaves_the_block_translated_and_chained_to_it() -> None:
    driver = DriverError("syntax error at or near x")
    error = raised(fail(driver))
    assert type(error) is BackendError
    assert str(error) == "driver: syntax error at or near x"
    assert error.__cause__ is driver


def test_storage_errors_and_foreign_errors_pass_the_block_untouched() -> None:
    ours = NotConnectedError("not connected")
    assert raised(fail(ours)) is ours
    bug = KeyError("a bug in the backend stays a bug")
    assert raised(fail(bug)) is bug


def test_also_widens_one_block_only_and_never_to_storage_errors() -> None:
    def parse(exc: Exception) -> Callable[[], None]:
        def block() -> None:
            with ERRORS.mapped(also=(Exception,)):
                raise exc

        return block

    assert type(raised(parse(ValueError("bad port")))) is BackendError
    assert type(raised(fail(ValueError("bad port")))) is ValueError
    ours = ConfigurationError("raised on purpose inside the block")
    assert raised(parse(ours)) is ours


def test_an_unchained_error_is_raised_from_none() -> None:
    driver = BadPassword("password authentication failed for user app")
    error = raised(fail(driver))
    assert type(error) is AuthenticationError
    assert error.__cause__ is None
    assert error.__suppress_context__  # kept out of tracebacks; its words were not secret, so kept


def test_a_driver_error_quoting_a_secret_is_cut_from_the_chain_whatever_the_translator_said() -> None:
    for driver in (DriverError(f"cannot reach {URL}"), BadPassword(f"AUTH {SECRET} refused")):
        error = raised(fail(driver))
        assert error.__cause__ is None
        assert error.__context__ is None, "the context holds the driver's words too"


def test_no_connection_is_always_the_translators_even_if_not_a_driver_error() -> None:
    error = raised(fail(NoConnection("all 5 connections busy for 1 s", busy=True)))
    assert type(error) is BusyError
    assert "all 5 connections busy" in str(error)


def test_outcome_unknown_reaches_the_translator() -> None:
    def write() -> None:
        with ERRORS.mapped(outcome_unknown=True):
            raise Lost("reset by peer")

    assert type(raised(write)) is OutcomeUnknownError


def test_error_for_returns_the_error_chained() -> None:
    driver = DriverError("WRONGTYPE")
    error = ERRORS.error_for(driver)
    assert type(error) is BackendError
    assert error.__cause__ is driver


@pytest.mark.parametrize(
    ("timed_out", "outcome_unknown", "expected"),
    [
        (True, False, StorageTimeoutError),
        (False, False, UnavailableError),
        (True, True, OutcomeUnknownError),
        (False, True, OutcomeUnknownError),
    ],
)
def test_in_flight_error(timed_out: bool, outcome_unknown: bool, expected: type[StorageError]) -> None:
    error = in_flight_error("Redis x: reset", timed_out=timed_out, outcome_unknown=outcome_unknown)
    assert type(error) is expected
    assert str(error).startswith("Redis x: reset")


def test_driver_message_names_the_store_and_the_error_not_the_secret() -> None:
    text = driver_message("Redis", URL, ConnectionError(f"AUTH {SECRET} failed on {URL}"))
    # The bare secret is never starred where it stood (that would show where, and so what, it
    # was): the driver's words are withheld whole. A URL they quote is redacted in place.
    assert text == (
        "Redis redis://:***@db.example:6379/0: ConnectionError: (the driver's message withheld: it quotes a credential)"
    )
    assert SECRET not in text
    quoted = driver_message("Redis", URL, ConnectionError(f"lost {URL}"))
    assert quoted == "Redis redis://:***@db.example:6379/0: ConnectionError: lost redis://:***@db.example:6379/0"


# -- retry -----------------------------------------------------------------------------------
class Script:
    """A connection and a call that fail as told, counting what was attempted."""

    def __init__(self, *, entering: Sequence[BaseException] = (), using: Sequence[BaseException] = ()) -> None:
        self.entering, self.using = list(entering), list(using)
        self.used = 0

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[str]:
        if self.entering:
            raise self.entering.pop(0)
        yield "conn"

    async def use(self, conn: str) -> str:
        self.used += 1
        if self.using:
            raise self.using.pop(0)
        return "done"


POLICY = RetryPolicy(
    connection_lost=(Lost,), timed_out=lambda exc: isinstance(exc, Slow), never_sent=(Refused,),
    rolled_back=(Deadlock,), rolled_back_retries=3, rolled_back_backoff=0,
)  # fmt: skip


async def outcome(call: Awaitable[object]) -> object:
    """What a call ended in: its result, or the class of the storage error it raised."""
    try:
        return await call
    except StorageError as exc:
        return type(exc)


def run(script: Script, *, idempotent: bool) -> Awaitable[object]:
    return POLICY.run(script.connection, script.use, idempotent=idempotent, errors=ERRORS)


D = Deadlock("deadlock")
RULES = {
    # rule: (what fails while connecting, what fails once connected, idempotent, outcome, calls made)
    "an idempotent call is sent again once after a lost connection": ([], [Lost()], True, "done", 2),
    "a write that may have been applied is never sent again": ([], [Lost()], False, OutcomeUnknownError, 1),
    "a write the driver proves unsent is sent again": ([], [Refused()], False, "done", 2),
    "a failure while connecting sent nothing: any call is sent again": ([Lost()], [], False, "done", 1),
    "a second failure while connecting is no unknown outcome": ([Lost(), Lost()], [], False, UnavailableError, 0),
    "only one reconnect per call": ([], [Lost(), Lost(), Lost()], True, UnavailableError, 2),
    "sent again as unsent, then lost: unknown": ([], [Refused(), Lost()], False, OutcomeUnknownError, 2),
    "a timed-out read is never sent again": ([], [Slow()], True, StorageTimeoutError, 1),
    "a timed-out write is never sent again, and unknown": ([], [Slow()], False, OutcomeUnknownError, 1),
    "a timeout while connecting sent nothing": ([Slow()], [], False, StorageTimeoutError, 0),
    "no connection in time: busy, never unknown": ([NoConnection("all busy", busy=True)], [], False, BusyError, 0),
    "a rolled-back call is resent, the reconnect kept": ([], [D, D, Lost(), D], True, "done", 5),
    "rolled-back resends are bounded": ([], [D, D, D, D, D], False, BackendError, 4),
    "the server's answer is final, no outcome unknown": ([], [DriverError("duplicate key")], False, BackendError, 1),
}


@pytest.mark.parametrize(("entering", "using", "idempotent", "ends_in", "calls"), RULES.values(), ids=RULES.keys())
async def test_retry_policy(entering, using, idempotent, ends_in, calls) -> None:
    script = Script(entering=entering, using=using)
    assert await outcome(run(script, idempotent=idempotent)) == ends_in
    assert script.used == calls


async def test_errors_that_are_not_the_drivers_pass_untouched_and_unretried() -> None:
    script = Script(using=[KeyError("bug")], entering=[])
    with pytest.raises(KeyError):
        await run(script, idempotent=True)
    assert script.used == 1
    closed = Script(entering=[NotConnectedError("closed")])
    with pytest.raises(NotConnectedError):
        await run(closed, idempotent=True)


# -- the backends' policies: which driver errors are which -------------------------------------
@pytest.mark.parametrize(
    ("error", "idempotent", "ends_in", "sends"),
    [
        (redis_errors.ConnectionError("Connection closed by server."), True, "done", 2),
        (redis_errors.ConnectionError("Connection closed by server."), False, OutcomeUnknownError, 1),
        (redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."), False, "done", 2),
        (redis_errors.TimeoutError("Timeout reading from socket"), True, StorageTimeoutError, 1),
        (redis_errors.TimeoutError("Timeout reading from socket"), False, OutcomeUnknownError, 1),
        (redis_errors.TimeoutError("Timeout connecting to server"), False, StorageTimeoutError, 1),
        (redis_errors.ConnectionError("No connection available."), True, BusyError, 1),
        (redis_errors.AuthenticationError("invalid username-password pair"), True, AuthenticationError, 1),
        (redis_errors.ResponseError("WRONGTYPE Operation against a key"), True, BackendError, 1),
    ],
)
async def test_redis_policy(error, idempotent, ends_in, sends) -> None:
    backend, script = RedisBackend("redis://127.0.0.1:1/0"), Script(using=[error])
    backend._client = object()  # no server: only the policy and the translator run
    assert (await outcome(backend._call(script.use, idempotent=idempotent)), script.used) == (ends_in, sends)


async def test_postgres_policy_and_pool_wait() -> None:
    backend = PostgresBackend("postgresql://app@127.0.0.1:1/db", sweep_interval=None)

    class Pool:
        """Enough of asyncpg's pool: every connection in use, acquire times out."""

        def get_size(self) -> int:
            return backend._pool_max

        def get_idle_size(self) -> int:
            return 0

        async def acquire(self, **options: float) -> object:
            raise TimeoutError

    backend._pool = Pool()
    with pytest.raises(BusyError, match="no free connection among 10") as info:
        await backend._call(lambda conn: asyncio.sleep(0), idempotent=False)
    assert info.value.__cause__ is None


@pytest.mark.parametrize(
    ("error", "idempotent", "ends_in", "sends"),
    [
        (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"), True, "done", 2),
        (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"), False, OutcomeUnknownError, 1),
        (TimeoutError(), True, StorageTimeoutError, 1),
        (TimeoutError(), False, OutcomeUnknownError, 1),
        (asyncpg.exceptions.DeadlockDetectedError("deadlock detected"), False, "done", 2),
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), False, BackendError, 1),
    ],
)
async def test_postgres_policy(error, idempotent, ends_in, sends, monkeypatch) -> None:
    backend, script = PostgresBackend("postgresql://app@127.0.0.1:1/db", sweep_interval=None), Script(using=[error])
    monkeypatch.setattr(backend, "_connection", script.connection)  # no pool: only the policy and translator
    assert (await outcome(backend._call(script.use, idempotent=idempotent)), script.used) == (ends_in, sends)


# -- scan ------------------------------------------------------------------------------------
class Index:
    """An ordered index answering keyset pages, as a SQL primary key does."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = sorted(keys)
        self.pages: list[Page] = []

    async def fetch(self, page: Page) -> list[str]:
        self.pages.append(page)
        return [
            k
            for k in self.keys
            if (k >= page.start if page.inclusive else k > page.start) and (page.stop is None or k < page.stop)
        ][: page.limit]


KEYS = ["deal", "deal:", "deal:1", "deal:1:x", "deal:2", "deal:3:x", "deal:\U0010ffff", "deal;", "deals", "z"]


@pytest.mark.parametrize("batch", [1, 2, 3, 7, 100])
@pytest.mark.parametrize("pattern", ["deal:*", "deal:*:x", "*", "deal:1", "d*s", "nothing*"])
async def test_scan_pages_lists_exactly_the_matching_keys(pattern: str, batch: int) -> None:
    glob = compile_glob(pattern)
    index = Index(KEYS)
    found = [key async for key in scan_pages(glob, batch, index.fetch)]
    assert found == [k for k in sorted(KEYS) if glob.matches(k)]


async def test_scan_pages_bounds_each_page_by_the_prefix_and_the_last_key() -> None:
    index = Index(KEYS)
    found = [key async for key in scan_pages(compile_glob("deal:*"), 2, index.fetch)]
    assert found == ["deal:", "deal:1", "deal:1:x", "deal:2", "deal:3:x", "deal:\U0010ffff"]
    assert index.pages == [
        Page("deal:", True, "deal;", 2),
        Page("deal:1", False, "deal;", 2),
        Page("deal:2", False, "deal;", 2),
        Page("deal:\U0010ffff", False, "deal;", 2),  # a full page may be the last: one more, empty
    ]
    assert index.pages[0].bounds == ("deal:", "deal;")
    index.pages.clear()
    assert len([key async for key in scan_pages(compile_glob("deal:*"), 4, index.fetch)]) == 6
    assert len(index.pages) == 2, "a short page is the last: no empty page fetched after it"
    assert Page("", True, None, 5).bounds == ("",)


# -- sweeper ---------------------------------------------------------------------------------
async def test_purge_in_batches_stops_at_a_short_batch_and_yields_between_batches() -> None:
    expired, calls, ran_between = 23, [], []

    async def delete(limit: int) -> int:
        nonlocal expired
        calls.append(limit)
        deleted = min(limit, expired)
        expired -= deleted
        return deleted

    async def foreground() -> None:
        while True:
            ran_between.append(len(calls))
            await asyncio.sleep(0)

    task = asyncio.create_task(foreground())
    await asyncio.sleep(0)
    assert await purge_in_batches(delete, 10) == 23
    task.cancel()
    assert calls == [10, 10, 10]
    assert {1, 2} <= set(ran_between), "foreground work ran between batches"


async def test_purge_in_batches_of_an_exact_multiple_and_when_another_instance_sweeps() -> None:
    answers = iter([5, 5, 0])
    assert await purge_in_batches(lambda limit: asyncio.sleep(0, next(answers)), 5) == 10
    others = iter([5, None, 5])
    assert await purge_in_batches(lambda limit: asyncio.sleep(0, next(others)), 5) == 5


# -- identifiers -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["kv_store", "_t", "T1", "a" * 63])
def test_identifiers_pass(name: str) -> None:
    assert check_identifier("POSTGRES_TABLE", name) == name


@pytest.mark.parametrize("name", ["", "1t", "kv-store", 'kv"; DROP TABLE x;--', "kv\n", "a" * 64, "tablé"])
def test_anything_else_is_refused_naming_the_setting(name: str) -> None:
    with pytest.raises(ConfigurationError, match="SQLITE_TABLE must be an identifier"):
        check_identifier("SQLITE_TABLE", name)


# -- subscription ----------------------------------------------------------------------------
async def test_queue_subscription_delivers_in_order_while_inside_and_detaches_on_leaving() -> None:
    listeners: list[Deliver] = []

    @asynccontextmanager
    async def listen(deliver: Deliver) -> AsyncIterator[None]:
        listeners.append(deliver)
        try:
            yield
        finally:
            listeners.remove(deliver)

    async with queue_subscription(listen) as messages:
        assert len(listeners) == 1
        for text in ("a", "b", "c"):  # delivered before anyone waits: queued
            listeners[0](text)
        assert [await anext(messages) for _ in range(3)] == ["a", "b", "c"]
        waiting = asyncio.ensure_future(anext(messages))
        await asyncio.sleep(0)
        listeners[0]("d")
        assert await asyncio.wait_for(waiting, 1) == "d"
    assert listeners == []


async def test_queue_subscription_that_cannot_listen_raises_on_entering() -> None:
    def listen(deliver: Deliver) -> AbstractAsyncContextManager[None]:
        raise UnavailableError("LISTEN refused")

    with pytest.raises(UnavailableError):
        async with queue_subscription(listen):
            raise AssertionError("entered")


# -- SeenKeys: each key once, in bounded memory --------------------------------------------------
async def test_seen_keys_yields_each_key_once_before_and_after_spilling_to_disk() -> None:
    with SeenKeys(spill_after=1000) as seen:
        first = await seen.first_time([b"a", b"b", b"a"])
        assert first == [b"a", b"b"]
        fresh: list[bytes] = []
        for start in range(0, 30_000, 700):  # overlapping batches, repeats across the spill
            batch = [f"key:{i}".encode() for i in range(max(0, start - 300), start + 700)]
            fresh += await seen.first_time(batch + batch[:10])
        assert len(fresh) == len(set(fresh)) == 30_100
        assert await seen.first_time([b"a", b"key:5", b"new"]) == [b"new"]


async def test_seen_keys_holds_little_python_memory_for_many_keys() -> None:
    tracemalloc.start()
    try:
        with SeenKeys() as seen:
            for start in range(0, 300_000, 1000):
                await seen.first_time([f"deal:{i:012d}".encode() for i in range(start, start + 1000)])
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * 2**20, f"{peak / 2**20:.1f} MiB held for 300,000 keys"


async def test_a_redis_scan_that_repeats_keys_lists_each_once(monkeypatch) -> None:
    backend = RedisBackend("redis://127.0.0.1:1/0", key_prefix="p:")

    async def pages(pattern: object, count: int) -> AsyncIterator[list[bytes]]:
        yield [b"p:deal:1", b"p:deal:2", b"other:deal:3"]
        yield [b"p:deal:2", b"p:deal:4"]
        yield [b"p:deal:1"]

    monkeypatch.setattr(backend, "_scan_pages", pages)
    listed = [key async for key in backend.scan(compile_glob("deal:*"), 100)]
    assert listed == ["deal:1", "deal:2", "deal:4"]
