"""Single keys, versions, read-modify-write, increments and bulk calls: the reads and writes of
:class:`~ad_buyer_storage.client.store.Store`."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, cast, overload

from ad_buyer_storage.client import telemetry
from ad_buyer_storage.client.base import (
    _DECIMAL_CONTEXT,
    _MISSING,
    D,
    StoreBase,
    T,
    Updater,
    Versioned,
    _found,
    _found_versioned,
    _holding,
    _settle,
)
from ad_buyer_storage.client.codec import JsonCodec, validate_as
from ad_buyer_storage.client.combine import Increment, Update, sign_runs
from ad_buyer_storage.client.refresh import read_refresh
from ad_buyer_storage.client.validation import (
    TTL,
    as_decimal,
    check_amount,
    check_attempts,
    check_key,
    check_keys,
    check_version,
    ttl_to_ms,
)
from ad_buyer_storage.contract.protocol import Capability, Condition, StorageBackend, Write, new_version, new_versions
from ad_buyer_storage.errors import (
    InvalidInputError,
    InvalidValueError,
    KeyNotFoundError,
    PartialBatchError,
    VersionConflictError,
)

__all__ = ["KeyValue"]


class KeyValue(StoreBase):
    """Reads and writes of one key or many, on the backend's primitives (part of ``Store``)."""

    # -- single keys -------------------------------------------------------------------------
    @overload
    async def get(
        self, key: str, default: Any = None, *, model: None = None, refresh_ttl: TTL | bool = None
    ) -> Any: ...
    @overload
    async def get(
        self, key: str, default: None = None, *, model: type[T], refresh_ttl: TTL | bool = None
    ) -> T | None: ...
    @overload
    async def get(self, key: str, default: D, *, model: type[T], refresh_ttl: TTL | bool = None) -> T | D: ...
    async def get(
        self, key: str, default: Any = None, *, model: type[Any] | None = None, refresh_ttl: TTL | bool = None
    ) -> Any:
        """The value at *key*, or *default* if missing or expired. ``model=`` restores rich types.

        ``refresh_ttl=`` renews the key's expiry with the read (a sliding TTL): to that many
        seconds, or with ``True`` to the TTL the key was last given (a key without one keeps
        none). In one atomic step where the backend offers it (SQLite, Redis, PostgreSQL,
        memory); else, for a number, a read then an ``expire``.
        """
        if telemetry.hook is not None and telemetry.hook.claim():
            found = await telemetry.hook.run(
                self, "get", key, KeyValue.get(self, key, _MISSING, model=model, refresh_ttl=refresh_ttl), _found
            )
            return default if found is _MISSING else found
        backend = self.require_open()
        key = check_key(key)
        if refresh_ttl is None or refresh_ttl is False:
            record = await self._read_one(backend, key)
        else:
            ttl_ms = None if refresh_ttl is True else ttl_to_ms(refresh_ttl)
            self._require(Capability.EXPIRY, "expiry", key)
            refresher = self._flagged if Capability.REFRESH in self.capabilities_for(key) else None
            record = await read_refresh(backend, refresher, key, ttl_ms)
        if record is None:
            return default
        value = self._codec.decode(record.value)
        return value if model is None else validate_as(model, value)

    async def set(
        self,
        key: str,
        value: Any,
        ttl: TTL = None,
        *,
        keep_ttl: bool = False,
        if_version: str | None = None,
    ) -> str:
        """Store *value*; return its new version token.

        Without *ttl* an earlier expiry is removed, unless ``keep_ttl=True``. With
        ``if_version=`` the write applies only if the live value still has that version, else
        :class:`~ad_buyer_storage.errors.VersionConflictError`.
        """
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(
                self, "set", key, KeyValue.set(self, key, value, ttl, keep_ttl=keep_ttl, if_version=if_version)
            )
        backend = self.require_open()
        key = check_key(key)
        ttl_ms = self._ttl_ms(ttl, key)
        if keep_ttl and ttl_ms is not None:
            raise InvalidInputError("pass either ttl= or keep_ttl=True, not both")
        text = self._codec.encode(value)
        version = new_version()
        if if_version is None:
            write = Write(key, text, version, ttl_ms, keep_ttl)
        else:
            self._require(Capability.ATOMIC, "version-checked writes", key)
            write = Write(key, text, version, ttl_ms, keep_ttl, Condition.IF_VERSION, check_version(if_version))
        if not await self._write_one(backend, write):
            raise VersionConflictError(f"{key!r} is no longer at version {if_version!r}")
        return version

    async def set_if_absent(self, key: str, value: Any, ttl: TTL = None) -> bool:
        """Store *value* only if *key* holds no live value; return whether it was stored."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "set_if_absent", key, KeyValue.set_if_absent(self, key, value, ttl))
        backend = self.require_open()
        key = check_key(key)
        self._require(Capability.ATOMIC, "set-if-absent", key)
        ttl_ms = self._ttl_ms(ttl, key)
        write = Write(key, self._codec.encode(value), new_version(), ttl_ms, False, Condition.IF_ABSENT)
        return await self._write_one(backend, write)

    async def delete(self, key: str) -> bool:
        """Delete *key*; True if it held a live value."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "delete", key, KeyValue.delete(self, key))
        backend = self.require_open()
        return await backend.remove((check_key(key),)) == 1

    async def exists(self, key: str) -> bool:
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "exists", key, KeyValue.exists(self, key))
        backend = self.require_open()
        return await backend.count((check_key(key),)) == 1

    # -- versions and read-modify-write --------------------------------------------------------
    async def get_versioned(self, key: str, *, model: type[Any] | None = None) -> Versioned | None:
        """The value and its version token, or None if missing or expired."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(
                self, "get_versioned", key, KeyValue.get_versioned(self, key, model=model), _found_versioned
            )
        backend = self.require_open()
        key = check_key(key)
        self._require(Capability.ATOMIC, "versioned reads", key)
        record = await self._read_one(backend, key)
        if record is None:
            return None
        value = self._codec.decode(record.value)
        return Versioned(value if model is None else validate_as(model, value), record.version)

    async def update(
        self,
        key: str,
        fn: Updater,
        *,
        default: Any = _MISSING,
        ttl: TTL = None,
        max_attempts: int = 200,
    ) -> Any:
        """Atomically replace the value at *key* with ``fn(current)``; return the new value.

        Optimistic concurrency: read with version, compute, write if the version still
        matches, retry with jittered backoff otherwise. *fn* may run more than once; it must
        not mutate shared state. A missing key raises :class:`KeyNotFoundError` unless
        *default* is given. The existing expiry is kept unless *ttl* is given; *ttl* also
        applies when the key is created.
        """
        check_attempts(max_attempts, "max_attempts")
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(
                self, "update", key, KeyValue.update(self, key, fn, default=default, ttl=ttl, max_attempts=max_attempts)
            )
        self.require_open()
        key = check_key(key)
        self._require(Capability.ATOMIC, "atomic updates", key)
        return await self._update(key, fn, default, self._ttl_ms(ttl, key), False, max_attempts)

    async def _update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        default: Any,
        ttl_ms: int | None,
        ttl_on_create_only: bool,
        max_attempts: int,
    ) -> Any:
        self.require_open()
        op = Update(fn, default, ttl_ms, ttl_on_create_only, max_attempts)
        if self._updates is not None and not _holding.get():
            return await self._updates.submit(key, op)
        await self._apply_updates(key, [op])
        return await op.future

    async def _apply_updates(self, key: str, group: list[Update]) -> None:
        """One read, every function in order, one conditional write (see combine.py)."""
        backend = self.require_open()
        codec = self._codec
        token = _holding.set(True)  # an update from inside a function must not wait on any group (see _holding)
        try:
            for attempt in itertools.count():
                for op in group:  # each caller gives up after its own number of attempts
                    if attempt >= op.max_attempts:
                        _settle(op.future, error=VersionConflictError(
                            f"gave up updating {key!r} after {op.max_attempts} conflicting attempts"
                        ))  # fmt: skip
                group = [op for op in group if not op.future.done()]
                if not group:
                    return
                if attempt:  # jittered exponential backoff spreads the losers of a race over time
                    await asyncio.sleep(random.uniform(0, min(0.05, 0.0005 * 2 ** (attempt - 1))))
                if await self._update_once(backend, codec, key, group):
                    return
        finally:
            _holding.reset(token)

    async def _update_once(self, backend: StorageBackend, codec: JsonCodec, key: str, group: list[Update]) -> bool:
        """Apply *group* to the value read now; False if another write overtook it."""
        record = await self._read_one(backend, key)
        text: str | bytes | None = None if record is None else record.value
        written: str | None = None  # what the group's write will store
        write_ttl, keep = None, True  # an existing expiry is kept unless a caller sets one
        outcomes: list[tuple[Update, Any, BaseException | None]] = []
        for op in group:
            if op.future.done():  # cancelled meanwhile
                continue
            try:
                if text is None:
                    if op.default is _MISSING:
                        raise KeyNotFoundError(f"{key!r} does not exist")
                    current = codec.decode(codec.encode(op.default))  # a private copy
                else:
                    current = codec.decode(text)
                new_value = op.fn(current)
                if isinstance(new_value, Awaitable):
                    new_value = await new_value
                new_text = codec.encode(new_value)
            except Exception as exc:  # noqa: BLE001 - this caller's own error
                outcomes.append((op, None, exc))
                continue
            if text is None or (not op.ttl_on_create_only and op.ttl_ms is not None):
                write_ttl, keep = op.ttl_ms, False
            text = written = new_text
            outcomes.append((op, new_value, None))
        if written is not None:
            if record is None:
                write = Write(key, written, new_version(), write_ttl, keep, Condition.IF_ABSENT)
            else:
                write = Write(key, written, new_version(), write_ttl, keep, Condition.IF_VERSION, record.version)
            if not await self._write_one(backend, write):
                return False
        for op, value, error in outcomes:
            _settle(op.future, value, error=error)
        return True

    async def _apply_increments(self, key: str, group: list[Increment]) -> None:
        """One server-side increment per run of same-signed amounts (see combine.py)."""
        self.require_open()
        for run in sign_runs(group):
            run = [op for op in run if not op.future.done()]
            if not run:
                continue
            total = sum(op.amount for op in run)
            try:
                result = await self._atomic.increment(key, total, new_version(), run[0].ttl_ms)
            except InvalidValueError as exc:
                if len(run) == 1:
                    _settle(run[0].future, error=exc)
                    continue
                # Not an integer (each caller hears so) or the total leaves 64 bits while a
                # prefix of the run might not: one call per caller gives each its exact answer.
                for op in run:
                    if op.future.done():  # cancelled while the calls before it ran: never sent
                        continue
                    try:
                        _settle(op.future, await self._atomic.increment(key, op.amount, new_version(), op.ttl_ms))
                    except InvalidValueError as one:
                        _settle(op.future, error=one)
                continue
            running = result - total
            for op in run:
                running += op.amount
                _settle(op.future, running)

    @overload
    async def incr(self, key: str, amount: int = 1, *, ttl: TTL = None) -> int: ...
    @overload
    async def incr(self, key: str, amount: Decimal, *, ttl: TTL = None) -> Decimal: ...
    async def incr(self, key: str, amount: int | Decimal = 1, *, ttl: TTL = None) -> int | Decimal:
        """Atomically add *amount* (absent counts as 0) and return the new value.

        ``int`` amounts run on the server (64-bit). ``Decimal`` amounts are exact (money): the
        value is kept as decimal text and updated with a version check. *ttl* applies only
        when this call creates the key.
        """
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "incr", key, KeyValue.incr(self, key, amount, ttl=ttl))
        self.require_open()
        key = check_key(key)
        self._require(Capability.ATOMIC, "atomic increments", key)
        amount = check_amount(amount)
        ttl_ms = self._ttl_ms(ttl, key)
        if isinstance(amount, Decimal):
            decimal_amount = amount

            def add(current: Any) -> str:
                return str(_DECIMAL_CONTEXT.add(as_decimal(current, key), decimal_amount))

            return Decimal(await self._update(key, add, "0", ttl_ms, True, 1000))
        if self._increments is None:
            return await self._atomic.increment(key, amount, new_version(), ttl_ms)
        return cast(int, await self._increments.submit(key, Increment(amount, ttl_ms)))

    # -- bulk --------------------------------------------------------------------------------
    @overload
    async def get_many(self, keys: Iterable[str], *, model: None = None) -> dict[str, Any]: ...
    @overload
    async def get_many(self, keys: Iterable[str], *, model: type[T]) -> dict[str, T]: ...
    async def get_many(self, keys: Iterable[str], *, model: type[Any] | None = None) -> dict[str, Any]:
        """Live values for *keys* in one round trip; missing and expired keys are left out."""
        if telemetry.hook is not None and telemetry.hook.claim():
            keys = list(keys)
            return await telemetry.hook.run(self, "get_many", keys, KeyValue.get_many(self, keys, model=model), len)
        backend = self.require_open()
        unique = list(dict.fromkeys(check_key(k) for k in keys))
        if not unique:
            return {}
        try:
            records = await backend.read(unique)
        except PartialBatchError as exc:
            raise exc.first_error() from None
        decode = self._codec.decode
        out: dict[str, Any] = {}
        for key, record in zip(unique, records, strict=True):
            if record is not None:
                value = decode(record.value)
                out[key] = value if model is None else validate_as(model, value)
        return out

    async def set_many(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]], ttl: TTL = None) -> None:
        """Store every item (all validated and encoded before any I/O), in one round trip.

        Not atomic: if the store refuses one item, the others are stored and its error is raised.
        """
        if telemetry.hook is not None and telemetry.hook.claim():
            listed = list(items.items() if isinstance(items, Mapping) else items)
            keys = [key for key, _ in listed]
            return await telemetry.hook.run(self, "set_many", keys, KeyValue.set_many(self, listed, ttl))
        backend = self.require_open()
        ttl_ms = ttl_to_ms(ttl)
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        keys = check_keys([key for key, _ in pairs])
        encode = self._codec.encode
        staged = {key: encode(value) for key, (_, value) in zip(keys, pairs, strict=True)}  # last value wins
        if ttl_ms is not None:
            for key in staged if self._caps_for is not None else (None,):
                self._require(Capability.EXPIRY, "expiry", key)
        if staged:
            versions = new_versions(len(staged))
            try:
                await backend.write(
                    [
                        Write(k, text, version, ttl_ms)
                        for (k, text), version in zip(staged.items(), versions, strict=True)
                    ]
                )
            except PartialBatchError as exc:
                raise exc.first_error() from None

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Delete *keys* in one round trip; return how many held live values."""
        if telemetry.hook is not None and telemetry.hook.claim():
            keys = list(keys)
            return await telemetry.hook.run(self, "delete_many", keys, KeyValue.delete_many(self, keys))
        backend = self.require_open()
        unique = list(dict.fromkeys(check_key(k) for k in keys))
        return await backend.remove(unique) if unique else 0
