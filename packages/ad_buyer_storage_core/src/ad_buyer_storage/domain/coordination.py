"""Moved: lease locks and rate limits are generic (they need a store, not the domain) and live
in :mod:`ad_buyer_storage.client.coordination`. This module keeps the old import path working."""

from ad_buyer_storage.client.coordination import (
    LeaseLock,
    RateLimiter,
    RateLimitResult,
    SlidingWindowRateLimiter,
    read_fenced,
    write_fenced,
)

__all__ = ["LeaseLock", "RateLimitResult", "RateLimiter", "SlidingWindowRateLimiter", "read_fenced", "write_fenced"]
