"""The Lua scripts the backend runs on the server (each atomic there), and how they are sent.

A script is sent by its SHA-1 (``EVALSHA``), and by its text when the server does not know it
yet (``NOSCRIPT``: nothing ran). Values live in a hash per key: ``d`` the JSON text, ``v`` the
version, ``t`` the TTL in ms the key was given (for a sliding renewal).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis import exceptions as redis_errors

from ad_buyer_storage.contract.protocol import Condition

from .namespaces import REGISTER_SCRIPT

__all__ = [
    "COMMIT",
    "CONDITION_CODES",
    "GIVE_TURN",
    "INCREMENT",
    "READ",
    "READ_REFRESH",
    "REGISTER",
    "SET_TTL",
    "TAKE_TURN",
    "WRITE",
    "Script",
    "run",
]


class Script:
    """A script's text and its SHA-1 (what ``EVALSHA`` names it by)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


async def run(client: Any, script: Script, keys: Sequence[bytes], args: Sequence[Any]) -> Any:
    """*script* on *client* by its SHA-1, or by its text if the server does not have it yet."""
    try:
        return await client.evalsha(script.sha, len(keys), *keys, *args)
    except redis_errors.NoScriptError:
        return await client.eval(script.text, len(keys), *keys, *args)


# A key the server refuses (say, another program's string where our hash should be) fails on
# its own: its slot holds 'E' and the error, the other keys are served (see backend.py's _item_error).
READ = Script(
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
WRITE = Script(
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

CONDITION_CODES = {Condition.ALWAYS: "-", Condition.IF_ABSENT: "a", Condition.IF_VERSION: "v"}

INCREMENT = Script(
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
COMMIT = Script(
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

# A turn (see transactions.py): KEYS the turn key, its queue (token by arrival) and the
# waiters' heartbeats; ARGV the token and the lease in ms. 1 if the token now holds the turn.
# A waiter at the head of the queue whose heartbeat is over a second old (it died, or gave up)
# is dropped, so a waiter that went away never blocks the others for long.
TAKE_TURN = Script(
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
GIVE_TURN = Script(
    """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)


# A new expiry (ARGV[1] ms, '' for none), recorded as the TTL the key was given ('t').
SET_TTL = Script(
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
READ_REFRESH = Script(
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


REGISTER = Script(REGISTER_SCRIPT)
