"""A third-party backend: a dict with expiry, no atomics (so the kit checks refusals)."""
