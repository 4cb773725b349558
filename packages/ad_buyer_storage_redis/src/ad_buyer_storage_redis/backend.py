"""Redis backend on redis.asyncio, for one server or a Redis Cluster.

Layout: every key is ``PREFIX + key``, a small hash ``{d: <JSON text>, v: <version>}``, so
that ``HINCRBY`` gives exact server-side 64-bit increments and every write carries its version.
Writes that must touch value, version and expiry together run as Lua scripts (atomic on the
server); bulk reads and writes are one script call per batch (per hash slot on a cluster).

* TTLs are native and in milliseconds (``PEXPIRE``/``PTTL``), on the server's clock.
* Listing is ``SCAN`` with the escaped literal prefix as ``MATCH``, deduplicated, then matched
  by core's glob (Redis matches bytes; the contract matches characters). Never ``KEYS``.
* redis-py's own retries are off. Idempotent operations are retried once after a connection
  error; a write that may have reached the server raises ``OutcomeUnknownError`` instead of
  being sent twice (an ``INCR`` retried after a lost reply would count twice): the kit's
  :class:`RetryPolicy`, told which redis-py errors are which.
* Driver errors are translated in ``_RedisKeyValue._translate``, the one place, with URLs
  redacted (the kit's :class:`ErrorMap`).
* Redis Sentinel (``redis+sentinel://[user:pass@]h1:26379,h2:26380/service/db``): the client
  asks the sentinels for the service's master before each new connection (redis-py's
  ``master_for``); a connection to a master that died or was demoted fails (typed) and the
  next one goes to the new master.
* The key prefix is registered on connect so that no namespace nests in another (namespaces.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import re
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.backoff import NoBackoff

from ad_buyer_storage.contract.glob import GlobPattern, escape_glob
from ad_buyer_storage.contract.protocol import Capability, Check, Condition, Peer, PoolUsage, Record, Write
from ad_buyer_storage.errors import (
    AuthenticationError,
    BackendError,
    BusyError,
    ConfigurationError,
    InvalidValueError,
    NotConnectedError,
    ReadOnlyError,
    StorageError,
    StorageFullError,
    TLSError,
    UnavailableError,
    UnsupportedOperationError,
)
from ad_buyer_storage.kit import turns
from ad_buyer_storage.kit.batches import results_or_raise
from ad_buyer_storage.kit.errormap import ErrorMap, NoConnection, driver_message, in_flight_error, unchained
from ad_buyer_storage.kit.redaction import redact_url
from ad_buyer_storage.kit.retry import RetryPolicy
from ad_buyer_storage.kit.seen import SeenKeys
from ad_buyer_storage.kit.urls import encode_credentials, server_of

from .namespaces import NAMESPACES_KEY, REGISTER_SCRIPT, check_prefix, overlap_error

#: Sentinel's constructor is untyped before redis-py 8 and typed from 8 on: called through this
#: name, it type-checks on every version our range admits (no version-dependent `type: ignore`).
_new_sentinel: Callable[..., Sentinel] = Sentinel
_no_backoff: Callable[[], NoBackoff] = NoBackoff  # the same: untyped in redis-py 5

__all__ = ["RedisBackend", "RedisClusterBackend", "is_cluster_url", "is_sentinel_url", "parse_sentinel_url"]

log = logging.getLogger("ad_buyer_storage.redis")
T = TypeVar("T")
# Everything redis-py raises on purpose: its cluster client's own errors (cannot connect, slot
# not covered...) do not derive from RedisError.
_DRIVER_ERRORS = (redis_errors.RedisError, redis_errors.RedisClusterException)
# The cluster refused the command (down, resharding, failing over): nothing was applied.
_CLUSTER_UNAVAILABLE = (redis_errors.ClusterDownError, redis_errors.TryAgainError, redis_errors.MasterDownError)
_UNEXPECTED_OPTION = re.compile(r"unexpected keyword argument '(\w+)'")
_BATCH = 500  # keys per script call: bounded work per server call, so no call blocks Redis long


class _Script:
    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


# A key the server refuses (say, another program's string where our hash should be) fails on
# its own: its slot holds 'E' and the error, the other keys are served (see _item_error).
_READ = _Script(
    """
local out = {}
for i, key in ipairs(KEYS) do
  local ok, row = pcall(redis.call, 'HMGET', key, 'd', 'v')
  if ok then
    out[2 * i - 1] = row[1]
    out[2 * i] = row[2]
  else
    out[2 * i - 1] = false
    out[2 * i] = 'E' .. (type(row) == 'table' and row.err or tostring(row))
  end
end
return out
"""
)

# Writes, two arguments per key as MSET has (its name and its JSON), so that packing a batch
# costs what MSET's does. ARGV[1]: per key "<cond><keep><ttl ms>,<version length>,<expected
# length>;" (cond '-' always, 'a' if absent, 'v' if version; keep '1'/'0'; ttl empty for none);
# ARGV[2]: each key's new version then its expected one, concatenated; ARGV[2 + i]: key i's JSON.
# An unconditional write touches the key twice (HSET, then PEXPIRE or PERSIST); a recorded TTL
# 't' of '' means none.
_WRITE = _Script(
    """
local meta, tokens = ARGV[1], ARGV[2]
local at, tat = 1, 1
local function apply(key, i)
  local stop = string.find(meta, ';', at, true)
  local cond, keep = string.sub(meta, at, at), string.sub(meta, at + 1, at + 1)
  local ttl, vlen, elen = string.match(string.sub(meta, at + 2, stop - 1), '^(%d*),(%d+),(%d+)$')
  at = stop + 1
  vlen, elen = tonumber(vlen), tonumber(elen)
  local version = string.sub(tokens, tat, tat + vlen - 1)
  local expected = string.sub(tokens, tat + vlen, tat + vlen + elen - 1)
  tat = tat + vlen + elen
  if cond ~= '-' or keep == '1' then
    local exists = redis.call('EXISTS', key) == 1
    if cond == 'a' and exists then
      return 0
    elseif cond == 'v' and not (exists and redis.call('HGET', key, 'v') == expected) then
      return 0
    end
    if keep == '1' and exists then
      -- HSET keeps the key's expiry, and 't' the TTL it was given
      redis.call('HSET', key, 'd', ARGV[2 + i], 'v', version)
      return 1
    end
  end
  redis.call('HSET', key, 'd', ARGV[2 + i], 'v', version, 't', ttl)
  if ttl ~= '' then
    redis.call('PEXPIRE', key, ttl)  -- last: it deletes a key whose expiry has passed
  else
    redis.call('PERSIST', key)
  end
  return 1
end
local out = {}
for i, key in ipairs(KEYS) do
  local ok, result = pcall(apply, key, i)
  out[i] = ok and result or ('E' .. (type(result) == 'table' and result.err or tostring(result)))
end
return out
"""
)

_CONDITION_CODES = {Condition.ALWAYS: "-", Condition.IF_ABSENT: "a", Condition.IF_VERSION: "v"}

_INCREMENT = _Script(
    """
local existed = redis.call('EXISTS', KEYS[1])
redis.call('HINCRBY', KEYS[1], 'd', ARGV[1])
redis.call('HSET', KEYS[1], 'v', ARGV[2])
local value = redis.call('HGET', KEYS[1], 'd')  -- as text: a Lua number would round beyond 2**53
if existed == 0 and ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 't', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])  -- last: it deletes a key whose expiry has passed
end
return value
"""
)

# A transaction (SupportsTransactions.commit). KEYS: the checked keys, then the written ones,
# then the deleted ones, then the turn keys of them all (see turn()). ARGV: how many checked and
# written; per checked key its expected version ('' = absent); per written key JSON, version,
# ttl in ms ('' none), keep ttl ('1'/'0'); last, how many turn keys and this context's turn token
# ('' none): a turn held by another token fails the commit.
# Every key is vetted before the first write: a script that fails halfway keeps what it wrote.
_COMMIT = _Script(
    """
local checked, written = tonumber(ARGV[1]), tonumber(ARGV[2])
local turns, token = tonumber(ARGV[#ARGV - 1]), ARGV[#ARGV]
local own = #KEYS - turns
for i = own + 1, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if holder and holder ~= token then return 0 end
end
for i = 1, own do
  local kind = redis.call('TYPE', KEYS[i]).ok
  if kind ~= 'hash' and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE ' .. kind .. ' where a value of this store belongs')
  end
end
for i = 1, checked do
  local expected = ARGV[2 + i]
  local version = redis.call('HGET', KEYS[i], 'v')
  if expected == '' then
    if redis.call('EXISTS', KEYS[i]) == 1 then return 0 end
  elseif version ~= expected then
    return 0
  end
end
local base = 2 + checked
for i = 1, written do
  local key, b = KEYS[checked + i], base + (i - 1) * 4
  local exists = redis.call('EXISTS', key) == 1
  redis.call('HSET', key, 'd', ARGV[b + 1], 'v', ARGV[b + 2])
  if ARGV[b + 4] == '1' and exists then
    -- HSET keeps the key's expiry, and 't' the TTL it was given
  elseif ARGV[b + 3] ~= '' then
    redis.call('HSET', key, 't', ARGV[b + 3])
    redis.call('PEXPIRE', key, ARGV[b + 3])  -- last: it deletes a key whose expiry has passed
  else
    redis.call('PERSIST', key)
    redis.call('HDEL', key, 't')
  end
end
for i = checked + written + 1, own do
  redis.call('DEL', KEYS[i])
end
return 1
"""
)

# A turn (see _RedisKeyValue.turn): KEYS the turn key, its queue (token by arrival) and the
# waiters' heartbeats; ARGV the token and the lease in ms. 1 if the token now holds the turn.
# A waiter at the head of the queue whose heartbeat is over a second old (it died, or gave up)
# is dropped, so a waiter that went away never blocks the others for long.
_TAKE_TURN = _Script(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local token = ARGV[1]
if redis.call('GET', KEYS[1]) == token then return 1 end  -- taken already (a resent call)
redis.call('ZADD', KEYS[2], 'NX', now, token)
redis.call('HSET', KEYS[3], token, now)
redis.call('PEXPIRE', KEYS[2], 60000)
redis.call('PEXPIRE', KEYS[3], 60000)
while true do
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if head == nil or head == token then break end
  if now - tonumber(redis.call('HGET', KEYS[3], head) or '0') <= 1000 then break end
  redis.call('ZREM', KEYS[2], head)
  redis.call('HDEL', KEYS[3], head)
end
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('ZRANGE', KEYS[2], 0, 0)[1] ~= token then
  return 0
end
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
redis.call('ZREM', KEYS[2], token)
redis.call('HDEL', KEYS[3], token)
return 1
"""
)

# Gives a turn back (KEYS[1] the turn key) if ARGV[1] still holds it; also leaves its queue.
_GIVE_TURN = _Script(
    """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)

#: Between a user key and the prefix in the keys of its turn: no user key holds a NUL.
_TURN_MARK = b"\x00turn\x00"
#: How long a turn lasts at most if its holder dies (ms); a holder slower than that just
#: conflicts and retries, as without a turn.
_TURN_LEASE_MS = 10_000
#: The token of the turn this context holds (see turn()).
_TURN_TOKEN: ContextVar[str] = ContextVar("ad_buyer_storage_redis_turn", default="")

# A new expiry (ARGV[1] ms, '' for none), recorded as the TTL the key was given ('t').
_SET_TTL = _Script(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if ARGV[1] == '' then
  redis.call('PERSIST', KEYS[1])
  redis.call('HDEL', KEYS[1], 't')
else
  redis.call('HSET', KEYS[1], 't', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[1])  -- last: it deletes a key whose expiry has passed
end
return 1
"""
)

# Read and renew the expiry in one step: to ARGV[1] ms, or ('') to the TTL the key was given.
_READ_REFRESH = _Script(
    """
local row = redis.call('HMGET', KEYS[1], 'd', 'v', 't')
if not row[1] then
  return false
end
local ttl = row[3]
if ARGV[1] ~= '' then
  ttl = ARGV[1]
end
if ttl and ttl ~= '' then
  redis.call('HSET', KEYS[1], 't', ttl)
  redis.call('PEXPIRE', KEYS[1], ttl)  -- last: it deletes a key whose expiry has passed
end
return {row[1], row[2]}
"""
)


_REGISTER = _Script(REGISTER_SCRIPT)


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower().endswith("+cluster")


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower().endswith("+sentinel")


class SentinelTarget(NamedTuple):
    """What a ``redis+sentinel://`` URL names: the sentinels, the service, and the keyword
    arguments of the master's connections and of the sentinels' own."""

    sentinels: list[tuple[str, int]]
    service: str
    master: dict[str, Any]
    sentinel: dict[str, Any]


_SENTINEL_PORT = 26379
_SENTINEL_OPTIONS = ("sentinel_password", "sentinel_username")


def parse_sentinel_url(url: str) -> SentinelTarget:
    """``redis+sentinel://[user:pass@]host[:port][,host[:port]...]/service[/db][?options]``
    (``rediss+sentinel://`` for TLS to the master and the sentinels). Credentials and options
    are those of a plain ``redis://`` URL (parsed by redis-py) and go to the master's
    connections; ``sentinel_password=``/``sentinel_username=`` authenticate to the sentinels.
    Raises ValueError (the caller's error map makes it a ConfigurationError, redacted)."""
    scheme, sep, rest = encode_credentials(url).partition("://")
    if not sep or scheme.lower() not in ("redis+sentinel", "rediss+sentinel"):
        raise ValueError("not a redis+sentinel:// URL")
    parts = urlsplit("redis://" + rest)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    sentinels = [_host_port(item) for item in hosts.split(",") if item.strip()]
    path = [p for p in parts.path.split("/") if p]
    if not sentinels or not path or len(path) > 2:
        raise ValueError("expected redis+sentinel://host:26379[,host:port...]/service[/db]")
    service, db = path[0], path[1] if len(path) == 2 else "0"
    if not db.isdigit():  # redis-py would ignore it and use database 0
        raise ValueError("the database after the service must be a number: /service/0")
    query = parse_qsl(parts.query, keep_blank_values=True)
    sentinel_auth = {k.removeprefix("sentinel_"): v for k, v in query if k in _SENTINEL_OPTIONS}
    plain_query = urlencode([(k, v) for k, v in query if k not in _SENTINEL_OPTIONS])
    tls = scheme.lower().startswith("rediss")
    plain = f"{'rediss' if tls else 'redis'}://{userinfo}{at}localhost/{db}" + (
        f"?{plain_query}" if plain_query else ""
    )
    master = dict(parse_url(plain))
    for key in ("host", "port", "connection_class"):
        master.pop(key, None)
    sentinel: dict[str, Any] = dict(sentinel_auth)
    if tls:
        master["ssl"] = True  # SentinelConnectionPool picks its TLS connection class from this
        sentinel.update({k: v for k, v in master.items() if k.startswith("ssl")})
    return SentinelTarget(sentinels, service, master, sentinel)


def _host_port(item: str) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [::1]:26379
        host, _, port = item[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = item.partition(":")
    if not host or (port and not port.isdigit()):
        raise ValueError("a sentinel address is host[:port] with a numeric port")
    return host, int(port) if port else _SENTINEL_PORT


def _check_database(url: str, connect_url: str) -> None:
    """Refuse a path that is not a database number (``redis://h/notadb``, ``/1x``): redis-py
    ignores it and uses database 0, another deployment's data perhaps. Before any I/O; the
    path is not quoted (a malformed URL's path may hold a piece of a password)."""
    scheme = connect_url.partition("://")[0].lower()
    if scheme == "unix" or is_sentinel_url(connect_url):  # unix: ?db=; sentinel: parse_sentinel_url
        return
    try:
        path = urlsplit(connect_url).path
    except ValueError:
        return  # the connect maps the parser's error
    if path.strip("/") and not path.strip("/").isdigit():
        raise ConfigurationError(
            f"REDIS_URL {redact_url(url)}: the path must be a database number (redis://host:6379/0)"
        )


class _RedisKeyValue:
    """Everything but pub/sub, for one server or a cluster."""

    name = "redis"
    cluster = False

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "ad_buyer:",
        max_connections: int = 50,
        pool_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        command_timeout: float = 10.0,
        health_check_interval: float = 30.0,
        scan_count: int = 1000,
    ) -> None:
        if not key_prefix:
            raise ConfigurationError("REDIS_KEY_PREFIX must not be empty: it is what keeps other data out of reach")
        check_prefix(key_prefix)
        self._url = url
        self._connect_url = encode_credentials(url)
        _check_database(url, self._connect_url)
        self.key_prefix = key_prefix
        self._prefix_bytes = key_prefix.encode()
        self._cut = len(self._prefix_bytes)
        self._max_connections = max_connections
        self._options: dict[str, Any] = {
            "max_connections": max_connections,
            "socket_timeout": command_timeout,
            "socket_connect_timeout": connect_timeout,
            "health_check_interval": health_check_interval,
            # No blind retries inside the driver: _call decides what may be sent twice.
            "retry": Retry(_no_backoff(), 0),
        }
        self._pool_timeout = pool_timeout
        self._scan_count = scan_count
        self._client: Any = None
        self._pool: Any = None
        self._sentinel: Any = None
        self._errors = ErrorMap(self._translate, _DRIVER_ERRORS, secrets=(url,))
        self._limiter: asyncio.Semaphore | None = None
        # Our own count of the pool's use (redis-py tells it only through private attributes):
        # calls in flight, and the most there ever were at once (the connections the pool opened).
        self._in_flight = 0
        self._opened = 0
        self._registered = False
        self.capabilities = frozenset(
            {Capability.EXPIRY, Capability.ATOMIC, Capability.MULTI_PROCESS, Capability.TRANSACTIONS}
            | {Capability.REFRESH, Capability.TURNS}
        )

    def __repr__(self) -> str:
        mode = "cluster" if self.cluster else "sentinel" if is_sentinel_url(self._url) else "single"
        return f"RedisBackend({redact_url(self._url)!r}, prefix={self.key_prefix!r}, {mode})"

    def _translate(self, exc: BaseException, *, outcome_unknown: bool) -> StorageError:
        """The one place redis-py errors become storage errors (raised by self._errors)."""
        return _classify(exc, self._url, outcome_unknown=outcome_unknown)

    # -- lifecycle -------------------------------------------------------------------------
    async def connect(self) -> None:
        try:
            # redis-py raises ValueError for a malformed URL, and TypeError for a URL option the
            # kind of connection does not take (it passes options on as keywords).
            with self._errors.mapped(also=(ValueError, TypeError)):
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
                    # The sentinels' pool opens connections without waiting: our limiter makes
                    # callers wait for one instead (then BusyError), as the blocking pool does.
                    self._client = sentinels.master_for(target.service, **self._options, **target.master)
                    self._limiter = asyncio.Semaphore(self._max_connections)
                    await self._client.ping()
                else:
                    # A blocking pool: when every connection is busy, wait up to pool_timeout for
                    # one (then BusyError) instead of failing at once or opening without bound.
                    self._pool = aioredis.BlockingConnectionPool.from_url(
                        self._connect_url, timeout=self._pool_timeout, **self._options
                    )
                    self._client = aioredis.Redis(connection_pool=self._pool)
                    await self._client.ping()
            await self._register()
        except BaseException:
            await self.aclose()
            raise

    async def _register(self) -> None:
        """Claim our namespace (see namespaces.py); refuse one nested in another."""
        keys, args = [NAMESPACES_KEY.encode()], [self._prefix_bytes]
        other = await self._on_registry(lambda c: self._script(c, _REGISTER, keys, args))
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

    # -- plumbing --------------------------------------------------------------------------
    def _full(self, key: str) -> bytes:
        return self._prefix_bytes + key.encode()

    async def _call(self, fn: Callable[[Any], Awaitable[T]], *, idempotent: bool) -> T:
        """Run *fn(client)*; resent only where that cannot double-apply (_RETRY); errors translated."""

        async def guarded(client: Any) -> T:
            with _redis_py_faults():
                return await fn(client)

        return await _RETRY.run(self._connection, guarded, idempotent=idempotent, errors=self._errors)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """The client, once the cluster's connection limit lets this call in; counted in flight."""
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

    async def _script(self, client: Any, script: _Script, keys: Sequence[bytes], args: Sequence[Any]) -> Any:
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            return await client.eval(script.text, len(keys), *keys, *args)

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
        self, script: _Script, calls: list[tuple[list[bytes], list[Any]]], *, idempotent: bool
    ) -> list[Any]:
        """Run *script* once per call: one command when there is one, else one pipeline (one
        round trip per server, one connection each, never a fan-out of concurrent requests)."""
        if len(calls) == 1:
            keys, args = calls[0]
            return [await self._call(lambda c: self._script(c, script, keys, args), idempotent=idempotent)]

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

    # -- primitives ------------------------------------------------------------------------
    async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
        full = [self._full(k) for k in keys]
        if len(full) == 1:
            value, version = await self._call(lambda c: c.hmget(full[0], "d", "v"), idempotent=True)
            return [None if value is None else Record(value, version.decode())]
        groups = self._groups(full)
        replies = await self._run_scripts(_READ, [([full[i] for i in g], []) for g in groups], idempotent=True)
        out: list[object] = [None] * len(full)
        for group, flat in zip(groups, replies, strict=True):
            for n, i in enumerate(group):
                value, version = flat[2 * n], flat[2 * n + 1]
                if value is not None:
                    out[i] = Record(value, version.decode())
                elif version is not None:
                    out[i] = self._item_error(version)
        return results_or_raise(out)

    async def write(self, writes: Sequence[Write]) -> Sequence[bool]:
        if not self._registered:  # written again after clear(): claim the namespace again
            await self._register()
        full = [self._full(w.key) for w in writes]
        groups = self._groups(full)
        calls: list[tuple[list[bytes], list[Any]]] = []
        for group in groups:
            meta: list[str] = []
            tokens: list[str] = []
            for i in group:
                w = writes[i]
                expected = w.expected_version or ""
                meta.append(
                    f"{_CONDITION_CODES[w.condition]}{'1' if w.keep_ttl else '0'}{'' if w.ttl_ms is None else w.ttl_ms}"
                    f",{len(w.version.encode())},{len(expected.encode())};"
                )
                tokens += (w.version, expected)
            values = [writes[i].value for i in group]
            calls.append(([full[i] for i in group], ["".join(meta), "".join(tokens), *values]))
        # Unconditional writes are idempotent (same value, same version): safe to send again.
        idempotent = all(w.condition is Condition.ALWAYS for w in writes)
        replies = await self._run_scripts(_WRITE, calls, idempotent=idempotent)
        out: list[object] = [False] * len(writes)
        for group, applied in zip(groups, replies, strict=True):
            for n, i in enumerate(group):
                out[i] = self._item_error(applied[n]) if isinstance(applied[n], bytes) else applied[n] == 1
        return results_or_raise(out)

    def _item_error(self, marker: bytes) -> StorageError:
        """The error a script reported for one key (``b"E" + the server's message``)."""
        return self._errors.error_for(redis_errors.ResponseError(marker[1:].decode(errors="replace")))

    async def remove(self, keys: Sequence[str]) -> int:
        return await self._per_slot("DEL", [self._full(k) for k in keys])

    async def count(self, keys: Sequence[str]) -> int:
        return await self._per_slot("EXISTS", [self._full(k) for k in keys])

    async def scan(self, pattern: GlobPattern, batch_size: int) -> AsyncIterator[str]:
        with SeenKeys() as seen:  # SCAN may return a key twice (during rehashing): exact, bounded memory
            async for page in self._scan_pages(pattern, max(batch_size, self._scan_count)):
                page = [raw for raw in page if raw.startswith(self._prefix_bytes) and b"\x00" not in raw]  # no turns
                for raw in await seen.first_time(page):
                    key = raw[self._cut :].decode()
                    if pattern.is_prefix_only or pattern.matches(key):
                        yield key

    async def _scan_pages(self, pattern: GlobPattern, count: int) -> AsyncIterator[list[bytes]]:
        """SCAN's pages (every primary's, on a cluster), repeats and all."""
        match = escape_glob(self.key_prefix + pattern.prefix) + "*"
        client = self._client
        if client is None:
            raise NotConnectedError("the Redis backend is not connected")
        if self.cluster:
            iterator = client.scan_iter(match=match, count=count)
            page: list[bytes] = []
            while True:
                with self._errors.mapped(), _redis_py_faults():
                    raw = await anext(iterator, None)
                if raw is not None:
                    page.append(raw)
                if page and (raw is None or len(page) >= count):
                    yield page
                    page = []
                if raw is None:
                    return
        cursor: Any = 0
        while True:

            def scan_page(c: Any, cur: Any = cursor) -> Awaitable[tuple[Any, list[bytes]]]:
                return c.scan(cur, match=match, count=count)  # type: ignore[no-any-return]

            cursor, raws = await self._call(scan_page, idempotent=True)
            yield raws
            if cursor == 0:
                return

    async def release_namespace(self) -> None:
        """Storage.clear() emptied the namespace: a deployment nested in it may use this Redis now."""
        await self._on_registry(lambda c: c.srem(NAMESPACES_KEY, self._prefix_bytes))
        self._registered = False

    async def get_ttl(self, key: str) -> int:
        # PTTL answers -2 (missing) and -1 (no expiry): the protocol's NO_KEY and NO_EXPIRY.
        return int(await self._call(lambda c: c.pttl(self._full(key)), idempotent=True))

    async def set_ttl(self, key: str, ttl_ms: int | None) -> bool:
        args = ("" if ttl_ms is None else str(ttl_ms),)
        return bool(await self._call(lambda c: self._script(c, _SET_TTL, [self._full(key)], args), idempotent=True))

    async def read_refresh(self, key: str, ttl_ms: int | None) -> Record | None:
        args = ("" if ttl_ms is None else str(ttl_ms),)
        # Idempotent: renewing twice from now is renewing once.
        row = await self._call(lambda c: self._script(c, _READ_REFRESH, [self._full(key)], args), idempotent=True)
        return None if not row else Record(row[0], row[1].decode())

    async def increment(self, key: str, amount: int, version: str, ttl_ms: int | None) -> int:
        if not self._registered:
            await self._register()
        full = self._full(key)
        args = (amount, version, "" if ttl_ms is None else str(ttl_ms))
        return int(await self._call(lambda c: self._script(c, _INCREMENT, [full], args), idempotent=False))

    async def commit(self, checks: Sequence[Check], writes: Sequence[Write], deletes: Sequence[str]) -> bool:
        """One script: every check, then every write and delete, atomically (see _COMMIT).

        On a cluster a script runs on one node, so every key must be in one hash slot: give the
        keys of a transaction one hash tag (``campaign:{c1}``, ``order:{c1}:o1``); otherwise the
        commit is refused before anything is sent."""
        keys = (
            [self._full(k) for k, _ in checks] + [self._full(w.key) for w in writes] + [self._full(k) for k in deletes]
        )
        if self.cluster and len({self._client.keyslot(k) for k in keys}) > 1:
            raise UnsupportedOperationError(
                "on Redis Cluster a transaction's keys must share one hash slot; give them one hash tag "
                f"(campaign:{{c1}} and order:{{c1}}:o1); these span several: {', '.join(k for k, _ in checks[:3])}"
            )
        if not self._registered:
            await self._register()
        args: list[Any] = [len(checks), len(writes)]
        args += [version or "" for _, version in checks]
        for w in writes:
            args += (w.value, w.version, "" if w.ttl_ms is None else str(w.ttl_ms), "1" if w.keep_ttl else "0")
        # A commit that only checks (a read set validated) writes nothing a turn protects: no turn check.
        turn_keys = (
            [t for t in (self._turn_key(k) for k in dict.fromkeys(keys)) if t is not None] if writes or deletes else []
        )
        keys += turn_keys
        args += [len(turn_keys), _TURN_TOKEN.get()]
        # Never sent twice: a resend after a lost reply would find its own writes and fail its checks.
        applied = await self._call(lambda c: self._script(c, _COMMIT, keys, args), idempotent=False)
        return int(applied) == 1

    def _turn_key(self, full: bytes) -> bytes | None:
        """The key of *full*'s turn (in its hash slot on a cluster; None if it cannot be)."""
        turn = self._prefix_bytes + _TURN_MARK + full[self._cut :]
        if self.cluster and self._client is not None and self._client.keyslot(turn) != self._client.keyslot(full):
            return None  # a key without a hash tag: a transaction of it alone stays optimistic
        return turn

    @asynccontextmanager
    async def turn(self, keys: Sequence[str]) -> AsyncIterator[None]:
        """The turn on *keys* (see SupportsTurns): per key, in key order, a lease key set to this
        turn's token once the token heads the key's queue of waiters (ordered by arrival; a
        waiter that stops polling drops out after a second); the lease lapses after 10 s if its
        holder dies. Commits elsewhere fail while a key they touch has another token's lease."""
        wanted = sorted(set(keys) - turns.held(self, keys))
        if not wanted or _TURN_TOKEN.get():
            yield
            return
        token = uuid.uuid4().hex
        taken: list[list[bytes]] = []
        waiting: list[bytes] | None = None
        try:
            for key in wanted:
                turn = self._turn_key(self._full(key))
                if turn is None:
                    continue
                waiting = [turn, turn + b"\x00queue", turn + b"\x00beats"]
                pause = 0.001
                while not await self._turn_script(_TAKE_TURN, waiting, [token, _TURN_LEASE_MS]):
                    await asyncio.sleep(random.uniform(pause / 2, pause))
                    pause = min(pause * 2, 0.02)
                taken.append(waiting)
                waiting = None
            with turns.holding(self, wanted):
                context = _TURN_TOKEN.set(token)
                try:
                    yield
                finally:
                    _TURN_TOKEN.reset(context)
        finally:
            for triple in [*taken, *([waiting] if waiting else [])]:  # give back, or leave the queue
                with contextlib.suppress(Exception):
                    await self._turn_script(_GIVE_TURN, triple, [token])

    async def _turn_script(self, script: _Script, keys: list[bytes], args: list[Any]) -> bool:
        """Run a turn script (safe to resend: taking a turn held already answers 1)."""
        return bool(await self._call(lambda c: self._script(c, script, keys, args), idempotent=True))


class RedisClusterBackend(_RedisKeyValue):
    """A Redis Cluster (``redis+cluster://seed-host:port``): multi-key work is split by hash slot.

    No pub/sub: redis-py's asyncio cluster client has none, so the capability is not claimed.
    """

    cluster = True


class RedisBackend(_RedisKeyValue):
    """One Redis server (``redis://``, ``rediss://``, ``unix://``), with pub/sub."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.capabilities = self.capabilities | {Capability.PUBSUB}

    async def publish(self, channel: str, message: str) -> int:
        full = self._full(channel)
        return int(await self._call(lambda c: c.publish(full, message), idempotent=False))

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        return self._subscription(self._full(channel))

    @asynccontextmanager
    async def _subscription(self, full: bytes) -> AsyncIterator[AsyncIterator[str]]:
        if self._client is None:
            raise NotConnectedError("the Redis backend is not connected")
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            with self._errors.mapped():
                await pubsub.subscribe(full)
            yield self._messages(pubsub)
        finally:
            await pubsub.aclose()

    async def _messages(self, pubsub: Any) -> AsyncIterator[str]:
        with self._errors.mapped():
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    yield message["data"].decode()


@contextlib.contextmanager
def _redis_py_faults() -> Iterator[None]:
    """redis-py's asyncio cluster client may use a connection another task's failure has just
    disconnected (``'NoneType' object has no attribute 'writelines'``, seen when a cluster
    master was killed under load): an AttributeError raised in redis-py's own code is that
    connection lost under the command, and is raised as redis-py's ConnectionError, so that
    it is retried or reported like one (a pipeline's other nodes may have run their part)."""
    try:
        yield
    except AttributeError as exc:
        if not _raised_in_redis_py(exc):
            raise  # ours: a bug stays a bug
        raise redis_errors.ConnectionError(f"connection closed under the command ({exc})") from exc


def _raised_in_redis_py(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "redis" in Path(tb.tb_frame.f_code.co_filename).parts


def _pool_exhausted(exc: BaseException) -> bool:
    text = str(exc)
    return (
        isinstance(exc, getattr(redis_errors, "MaxConnectionsError", ()))
        or "No connection available" in text
        or "Too many connections" in text
    )


def _never_sent(exc: BaseException) -> bool:
    """True if the error happened while connecting: the command never left the client."""
    if isinstance(exc, MasterNotFoundError):  # no sentinel named a master: nothing was sent
        return True
    text = str(exc).lower()
    return "connecting to" in text or "connection refused" in text or _pool_exhausted(exc)


def _connection_lost(exc: BaseException) -> bool:
    """Dropped, refused or reset; not wrong credentials, nor a full pool (nothing to retry there)."""
    return (
        isinstance(exc, redis_errors.ConnectionError)
        and not isinstance(exc, redis_errors.AuthenticationError)
        and not _pool_exhausted(exc)
    )


# redis-py says by its words alone whether a command left the client.
_RETRY = RetryPolicy(connection_lost=_connection_lost, timed_out=(redis_errors.TimeoutError,), never_sent=_never_sent)


def _classify(exc: BaseException, url: str, *, outcome_unknown: bool) -> StorageError:
    """The storage error for a redis-py error *exc* (URL and secrets redacted); unchained where
    even the redacted driver's words are not worth keeping."""
    if isinstance(exc, NoConnection):  # our cluster connection limit gave up
        return unchained(BusyError(f"Redis {redact_url(url)}: {exc}"))
    text = str(exc)
    message = driver_message("Redis", url, exc)
    upper = text.upper()
    if isinstance(exc, redis_errors.AuthenticationError) or "NOAUTH" in upper or "WRONGPASS" in upper:
        return unchained(AuthenticationError(message))
    if any(isinstance(e, ssl.SSLError) for e in (exc, exc.__cause__, exc.__context__)):
        return TLSError(message)
    if isinstance(exc, redis_errors.RedisClusterException) and "Cluster mode is not enabled" in text:
        return unchained(
            ConfigurationError(
                f"{message} (REDIS_URL names a Redis Cluster, redis+cluster:// or REDIS_CLUSTER=true, but the "
                "server is a single Redis: use redis:// and REDIS_CLUSTER=false)"
            )
        )
    if isinstance(exc, _CLUSTER_UNAVAILABLE):
        return UnavailableError(message)
    if isinstance(exc, redis_errors.InvalidResponse):
        return BackendError(f"{message} (the server does not speak the Redis protocol: another service's port?)")
    if isinstance(exc, redis_errors.ResponseError) and not isinstance(exc, redis_errors.ConnectionError):
        if "not an integer" in text or "overflow" in text:
            return unchained(
                InvalidValueError("cannot increment: the value is not a 64-bit integer or the result would overflow")
            )
        if "DB INDEX IS OUT OF RANGE" in upper:
            return unchained(ConfigurationError(f"{message} (REDIS_URL names a database the server does not have)"))
        if upper.startswith("OOM"):
            return StorageFullError(message)
        if upper.startswith("READONLY"):
            return ReadOnlyError(message)
        if upper.startswith("BUSY") or upper.startswith("LOADING"):
            return BusyError(message)
        return BackendError(message)
    if isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError)):
        if _pool_exhausted(exc):
            return BusyError(message)
        timed_out = isinstance(exc, redis_errors.TimeoutError)
        return in_flight_error(message, timed_out=timed_out, outcome_unknown=outcome_unknown)
    if isinstance(exc, redis_errors.RedisClusterException):
        return UnavailableError(message)
    if isinstance(exc, TypeError) and not isinstance(exc, _DRIVER_ERRORS):  # from connect(): an option
        option = _UNEXPECTED_OPTION.search(text)
        return unchained(
            ConfigurationError(
                f"REDIS_URL {redact_url(url)} could not be used: option "
                f"{option.group(1) if option else '?'!r} is not one this kind of connection takes "
                "(ssl_* options need rediss://)"
            )
        )
    if isinstance(exc, ValueError) and not isinstance(exc, _DRIVER_ERRORS):  # from connect(): the URL
        # redis-py's words may quote the password: say what to check instead.
        return unchained(
            ConfigurationError(
                f"REDIS_URL {redact_url(url)} could not be used ({type(exc).__name__}); expected "
                "redis://host:6379/0 (credentials before an @), rediss://..., unix:///path.sock or "
                "redis+sentinel://host:26379,host:26380/service/0"
            )
        )
    return BackendError(message)
