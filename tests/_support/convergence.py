"""Compare two stores key by key: values as JSON documents, expiries within a tolerance."""

from __future__ import annotations

from ad_buyer_storage import Storage
from ad_buyer_storage.client.codec import canonical


async def differences(primary: Storage, secondary: Storage, *, ttl_tolerance: float = 2.0) -> list[str]:
    """Every way *secondary* differs from *primary*: keys on one side only, values, expiries."""
    mine, theirs = await primary.keys(), await secondary.keys()
    found = [f"only on primary: {k!r}" for k in sorted(set(mine) - set(theirs))]
    found += [f"only on secondary: {k!r}" for k in sorted(set(theirs) - set(mine))]
    shared = sorted(set(mine) & set(theirs))
    for start in range(0, len(shared), 500):
        chunk = shared[start : start + 500]
        a, b = await primary.backend.read(chunk), await secondary.backend.read(chunk)
        for key, left, right in zip(chunk, a, b, strict=True):
            if left is None or right is None:
                continue  # expired between the listing and the read
            if canonical(left.value) != canonical(right.value):
                found.append(f"value of {key!r}: {left.value!r} != {right.value!r}")
                continue
            ttl_a, ttl_b = await primary.ttl(key), await secondary.ttl(key)
            if (ttl_a is None) != (ttl_b is None) or (
                ttl_a is not None and ttl_b is not None and abs(ttl_a - ttl_b) > ttl_tolerance
            ):
                found.append(f"expiry of {key!r}: {ttl_a} != {ttl_b}")
    return found
