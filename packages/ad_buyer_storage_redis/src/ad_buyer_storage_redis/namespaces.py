"""The registry of the key prefixes (namespaces) in use on one Redis, so that none nests in another.

With ``REDIS_KEY_PREFIX=app:``, the keys of a deployment using ``app:staging:`` look like keys
``staging:...`` of ``app:``: its ``keys()`` would list them and its ``clear()`` delete them.
So each backend adds its prefix to one set outside every namespace when it connects, in one
atomic script that refuses a prefix when a registered one starts with it or is its start.
Deleting the whole namespace (``clear()``) removes it again; the next write registers it back.

On a Redis Cluster the set is one key, so it lives in one slot. A connection whose ACL forbids
the set (``NOPERM``) skips the check: its ACL already fences it in.
"""

from __future__ import annotations

from ad_buyer_storage.errors import ConfigurationError

__all__ = ["NAMESPACES_KEY", "REGISTER_SCRIPT", "check_prefix", "overlap_error"]

NAMESPACES_KEY = "ad_buyer_storage:namespaces"

# KEYS[1]: the set; ARGV[1]: our prefix. Returns the registered prefix ours overlaps, or nil
# after adding ours. One script: two deployments starting at once cannot both slip in.
REGISTER_SCRIPT = """
local mine = ARGV[1]
for _, other in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if other ~= mine and (string.sub(other, 1, #mine) == mine or string.sub(mine, 1, #other) == other) then
    return other
  end
end
redis.call('SADD', KEYS[1], mine)
return false
"""


def check_prefix(prefix: str) -> None:
    """Refuse a prefix whose namespace would hold the registry itself."""
    if NAMESPACES_KEY.startswith(prefix):
        raise ConfigurationError(
            f"REDIS_KEY_PREFIX {prefix!r} is the start of {NAMESPACES_KEY!r}, the key where namespaces are "
            "registered: its keys() and clear() would reach it. Choose a longer or another prefix."
        )


def overlap_error(mine: str, other: str) -> ConfigurationError:
    outer, inner = (mine, other) if other.startswith(mine) else (other, mine)
    return ConfigurationError(
        f"REDIS_KEY_PREFIX {mine!r} overlaps the namespace {other!r} already in use on this Redis: the keys of "
        f"{inner!r} are keys of {outer!r} too (its keys() would list them, its clear() delete them). Give each "
        f"deployment a prefix that is not the start of another's. If {other!r} is no longer used, clear it "
        f"(ad-buyer-storage clear --yes with REDIS_KEY_PREFIX={other}), or unregister it: "
        f"redis-cli SREM {NAMESPACES_KEY} '{other}'"
    )
