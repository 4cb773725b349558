"""The connection to Redis: one server's blocking pool, a cluster's client, or Sentinel's master;
how a call gets a connection (and waits for one), and how calls are sent (retried where safe,
errors translated, batches pipelined).

* One server: redis-py's blocking pool; when every connection is busy a call waits up to
  ``REDIS_POOL_TIMEOUT`` for one (then ``BusyError``) instead of failing or opening without bound.
* A cluster, or Sentinel's master: their pools open connections without waiting, so our own
  limiter makes callers wait instead, the same way.
* redis-py's own retries are off: :data:`~.errors.RETRY` decides what may be sent twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qsl, urlsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from ad_buyer_storage.contract.protocol import Capability, Peer, PoolUsage
from ad_buyer_storage.errors import BackendError, ConfigurationError, NotConnectedError, StorageError
from ad_buyer_storage.kit.errormap import ErrorMap, NoConnection
from ad_buyer_storage.kit.redaction import raise_redacted, redact_url
from ad_buyer_storage.kit.urls import encode_credentials, server_of
from ad_buyer_storage.plugins.settings import StorageSettings

from . import scripts
from .errors import ERRORS, RETRY, redis_py_faults, url_refused
from .namespaces import NAMESPACES_KEY, check_prefix, overlap_error
from .settings import RedisSettings, given_settings
from .urls import check_database, is_sentinel_url, parse_sentinel_url

__all__ = ["RedisClient"]

#: Sentinel's constructor is untyped before redis-py 8 and typed from 8 on: called through this
#: name, it type-checks on every version our range admits (no version-dependent `type: ignore`).
_new_sentinel: Callable[..., Sentinel] = Sentinel
_no_backoff: Callable[[], NoBackoff] = NoBackoff  # the same: untyped in redis-py 5

log = logging.getLogger("ad_buyer_storage.redis")
T = TypeVar("T")
_BATCH = 500  # keys per script call: bounded work per server call, so no call blocks Redis long
# Core's timeouts (STORAGE_CONNECT_TIMEOUT, STORAGE_COMMAND_TIMEOUT), spelled in core's settings.
_CONNECT_TIMEOUT: float = StorageSettings.model_fields["storage_connect_timeout"].default
_COMMAND_TIMEOUT: float = StorageSettings.model_fields["storage_command_timeout"].default


class RedisClient:
    """Settings, lifecycle and the sending of calls, for one server, Sentinel or a cluster.

    ``RedisBackend(settings, /, **fields)``: a :class:`RedisSettings`, or a URL and any of its
    fields by name (``key_prefix=``...), never read from the environment; the timeouts are
    core's settings (``STORAGE_CONNECT_TIMEOUT``/``STORAGE_COMMAND_TIMEOUT``)."""

    name = "redis"
    cluster: ClassVar[bool] = False
    #: What a subclass adds to the capabilities every Redis backend has (pub/sub: PubSub).
    extra_capabilities: ClassVar[frozenset[Capability]] = frozenset()

    def __init__(
        self,
        settings: RedisSettings | str,
        /,
        *,
        connect_timeout: float = _CONNECT_TIMEOUT,
        command_timeout: float = _COMMAND_TIMEOUT,
        **fields: Any,
    ) -> None:
        self.settings = chosen = given_settings(settings, fields)
        url = chosen.url
        if not url:
            raise ConfigurationError("the Redis backend needs REDIS_URL (for example redis://127.0.0.1:6379/0)")
        if chosen.cluster and not self.cluster:
            raise ConfigurationError("REDIS_CLUSTER=true: a Redis Cluster is a RedisClusterBackend")
        check_prefix(chosen.key_prefix)
        self._url = url
        self._connect_url = encode_credentials(url)
        check_database(url, self._connect_url)
        self.key_prefix = chosen.key_prefix
        self._prefix_bytes = chosen.key_prefix.encode()
        self._cut = len(self._prefix_bytes)
        self._max_connections = chosen.max_connections
        self._options: dict[str, Any] = {
            "max_connections": chosen.max_connections,
            "socket_timeout": command_timeout,
            "socket_connect_timeout": connect_timeout,
            "health_check_interval": chosen.health_check_interval,
            # No blind retries inside the driver: _call decides what may be sent twice.
            "retry": Retry(_no_backoff(), 0),
        }
        self._pool_timeout = chosen.pool_timeout
        self._scan_count = chosen.scan_count
        self._client: Any = None
        self._pool: Any = None
        self._sentinel: Any = None
        self._errors = ErrorMap(ERRORS.bind(url), ERRORS.driver_errors, secrets=(url,))
        self._limiter: asyncio.Semaphore | None = None
        # Our own count of the pool's use (redis-py tells it only through private attributes):
        # calls in flight, and the most there ever were at once (the connections the pool opened).
        self._in_flight = 0
        self._opened = 0
        self._registered = False
        self.capabilities = (
            frozenset({Capability.EXPIRY, Capability.ATOMIC, Capability.MULTI_PROCESS, Capability.TRANSACTIONS})
            | {Capability.REFRESH, Capability.TURNS}
            | self.extra_capabilities
        )

    def __repr__(self) -> str:
        return f"RedisBackend({redact_url(self._url)!r}, prefix={self.key_prefix!r}, {self._mode()})"

    def _mode(self) -> str:
        return "cluster" if self.cluster else "sentinel" if is_sentinel_url(self._url) else "single"

    # -- lifecycle -------------------------------------------------------------------------
    async def connect(self) -> None:
        try:
            try:
                with self._errors.mapped():
                    await self._open()
            except StorageError:
                raise
            except (ValueError, TypeError) as exc:
                # Only here: redis-py raises ValueError for a malformed URL and TypeError for a URL
                # option the kind of connection does not take (it passes options on as keywords).
                error = url_refused(exc, self._url)
                if error is None:
                    raise
                raise_redacted(error, self._url)
            await self._register()
        except BaseException:
            await self.aclose()
            raise

    async def _open(self) -> None:
        if self.cluster:
            url = self._connect_url.replace("+cluster://", "://", 1)
            self._client = RedisCluster.from_url(url, **self._options)
            await self._client.initialize()
            self._limiter = asyncio.Semaphore(self._max_connections)
        elif is_sentinel_url(self._url):
            target = parse_sentinel_url(self._url)
            timeouts = {k: v for k, v in self._options.items() if k.startswith("socket_") or k == "retry"}
            self._sentinel = sentinels = _new_sentinel(
                target.sentinels, sentinel_kwargs={**timeouts, **target.sentinel}
            )
            self._client = sentinels.master_for(target.service, **self._options, **target.master)
            self._limiter = asyncio.Semaphore(self._max_connections)
            await self._client.ping()
        else:
            self._pool = aioredis.BlockingConnectionPool.from_url(
                self._connect_url, timeout=self._pool_timeout, **self._options
            )
            self._client = aioredis.Redis(connection_pool=self._pool)
            await self._client.ping()

    async def _register(self) -> None:
        """Claim our namespace (see namespaces.py); refuse one nested in another."""
        keys, args = [NAMESPACES_KEY.encode()], [self._prefix_bytes]
        other = await self._on_registry(lambda c: scripts.run(c, scripts.REGISTER, keys, args))
        if other is not None:
            raise overlap_error(self.key_prefix, other.decode())
        self._registered = True

    async def _on_registry(self, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        """*fn* on the namespace registry; None if the ACL keeps this user out of it."""
        try:
            return await self._call(fn, idempotent=True)
        except BackendError as exc:
            if not isinstance(exc.__cause__, redis_errors.NoPermissionError):
                raise
            log.warning("Redis namespace %r not registered: the ACL forbids %s", self.key_prefix, NAMESPACES_KEY)
            return None

    async def release_namespace(self) -> None:
        """Storage.clear() emptied the namespace: a deployment nested in it may use this Redis now."""
        await self._on_registry(lambda c: c.srem(NAMESPACES_KEY, self._prefix_bytes))
        self._registered = False

    async def aclose(self) -> None:
        client, self._client = self._client, None
        pool, self._pool = self._pool, None
        sentinel, self._sentinel = self._sentinel, None
        self._opened = 0
        if client is not None:
            await client.aclose()
        if pool is not None:
            await pool.disconnect()
        if sentinel is not None:  # its clients of the sentinels themselves
            for node in sentinel.sentinels:
                await node.aclose()

    async def ping(self) -> None:
        await self._call(lambda c: c.ping(), idempotent=True)

    def peer(self) -> Peer:
        host, port, path = server_of(self._url, 6379)
        query = dict(parse_qsl(urlsplit(self._url).query)) if "?" in self._url else {}
        database = query.get("db") or path.strip("/") or "0"
        return Peer("redis", None if self.cluster else database, host, port)

    def pool_usage(self) -> PoolUsage | None:
        """The single server's pool (a cluster has one per node: not reported), from our own
        count of the calls in flight: up to the pool's size they hold a connection each, beyond
        it they wait for one; idle are the connections opened (the most calls ever in flight at
        once, up to the size: the pool keeps what it opened) that no call holds now."""
        if self._pool is None:
            return None
        size = self._max_connections
        used = min(self._in_flight, size)
        return PoolUsage(used, min(self._opened, size) - used, size, max(0, self._in_flight - size))

    async def info(self) -> Mapping[str, object]:
        raw = await self._call(lambda c: c.info("server"), idempotent=True)
        if self.cluster:  # {node: {section...}}
            nodes = (
                list(raw.values())
                if isinstance(raw, dict) and raw and isinstance(next(iter(raw.values())), dict)
                else [raw]
            )
            version = nodes[0].get("redis_version") if nodes else None
        else:
            nodes, version = [raw], raw.get("redis_version")
        return {
            "backend": "redis",
            "url": redact_url(self._url),
            "mode": "cluster" if self.cluster else "sentinel" if self._sentinel is not None else "single",
            "redis_version": version,
            "nodes": len(nodes),
            "namespace": self.key_prefix,
            "max_connections": self._options["max_connections"],
        }

    # -- sending calls -----------------------------------------------------------------------
    def _full(self, key: str) -> bytes:
        return self._prefix_bytes + key.encode()

    async def _call(self, fn: Callable[[Any], Awaitable[T]], *, idempotent: bool) -> T:
        """Run *fn(client)*; resent only where that cannot double-apply (RETRY); errors translated."""

        async def guarded(client: Any) -> T:
            with redis_py_faults():
                return await fn(client)

        return await RETRY.run(self._connection, guarded, idempotent=idempotent, errors=self._errors)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """The client, once the connection limit lets this call in; counted in flight."""
        client = self._client
        if client is None:
            raise NotConnectedError("the Redis backend is not connected")
        self._in_flight += 1
        self._opened = max(self._opened, self._in_flight)
        try:
            async with self._limited(client) as limited:
                yield limited
        finally:
            self._in_flight -= 1

    @asynccontextmanager
    async def _limited(self, client: Any) -> AsyncIterator[Any]:
        limiter = self._limiter
        if limiter is None:
            yield client
            return
        # A cluster client fails at once when a node's pool is full; wait for a slot instead,
        # as the single-server blocking pool does, and give up after pool_timeout.
        try:
            async with asyncio.timeout(self._pool_timeout if limiter.locked() else None):
                await limiter.acquire()
        except TimeoutError:
            raise NoConnection(
                f"all {self._max_connections} connections busy for {self._pool_timeout} s", busy=True
            ) from None
        try:
            yield client
        finally:
            limiter.release()

    async def _run_script(
        self, script: scripts.Script, keys: Sequence[bytes], args: Sequence[Any], *, idempotent: bool
    ) -> Any:
        """*script* as one call (see _call)."""
        return await self._call(lambda c: scripts.run(c, script, keys, args), idempotent=idempotent)

    def _groups(self, keys: Sequence[bytes]) -> list[list[int]]:
        """Index groups one call may take: at most _BATCH keys, all in one hash slot on a cluster."""
        if self.cluster:
            by_slot: dict[int, list[int]] = {}
            for i, key in enumerate(keys):
                by_slot.setdefault(self._client.keyslot(key), []).append(i)
            groups = list(by_slot.values())
        else:
            groups = [list(range(len(keys)))]
        return [g[i : i + _BATCH] for g in groups for i in range(0, len(g), _BATCH)]

    async def _run_scripts(
        self, script: scripts.Script, calls: list[tuple[list[bytes], list[Any]]], *, idempotent: bool
    ) -> list[Any]:
        """Run *script* once per call: one command when there is one, else one pipeline (one
        round trip per server, one connection each, never a fan-out of concurrent requests)."""
        if len(calls) == 1:
            keys, args = calls[0]
            return [await self._run_script(script, keys, args, idempotent=idempotent)]

        async def pipelined(client: Any) -> list[Any]:
            # A cluster node may have restarted without our scripts: send the text there.
            use_sha = not self.cluster
            for attempt in (1, 2):
                pipe = client.pipeline(transaction=False)
                for keys, args in calls:
                    if use_sha:
                        pipe.evalsha(script.sha, len(keys), *keys, *args)
                    else:
                        pipe.eval(script.text, len(keys), *keys, *args)
                try:
                    return list(await pipe.execute())
                except redis_errors.NoScriptError:
                    if attempt == 2:
                        raise
                    use_sha = False  # NOSCRIPT means nothing ran: send the text instead
            raise AssertionError("unreachable")

        return await self._call(pipelined, idempotent=idempotent)

    async def _per_slot(self, command: str, full: list[bytes]) -> int:
        """A multi-key command (DEL, EXISTS) summed over hash slots, pipelined."""
        if not self.cluster:
            return int(await self._call(lambda c: c.execute_command(command, *full), idempotent=True))

        async def pipelined(client: Any) -> int:
            pipe = client.pipeline(transaction=False)
            for group in self._groups(full):
                pipe.execute_command(command, *(full[i] for i in group))
            return sum(int(n) for n in await pipe.execute())

        return await self._call(pipelined, idempotent=True)
