"""What a ``REDIS_URL`` names: a cluster, Sentinel's services, a database; checked before any I/O.

redis-py parses plain URLs itself (``redis://``, ``rediss://``, ``unix://``); a Sentinel URL
(``redis+sentinel://[user:pass@]h1:26379,h2:26380/service/db``) is ours: it names several
sentinels, a service and the master's options, which redis-py's ``Sentinel`` takes apart.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

from redis.asyncio.connection import parse_url

from ad_buyer_storage.errors import ConfigurationError
from ad_buyer_storage.kit.redaction import redact_url
from ad_buyer_storage.kit.urls import encode_credentials

__all__ = ["SentinelTarget", "check_database", "is_cluster_url", "is_sentinel_url", "parse_sentinel_url"]


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


def check_database(url: str, connect_url: str) -> None:
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
