"""``mirror-repair``: copy again what a mirror in ``record`` mode could not copy."""

from __future__ import annotations

import json
import os

from ad_buyer_storage.composed.mirror import MirrorBackend

__all__ = ["repair"]

_BATCH = 500


async def repair(mirror: MirrorBackend) -> int:
    """Copy every key of the repair log again from the primary to the secondary.

    The log is renamed before it is read, so failures recorded meanwhile go to a new log and
    are not lost; it is deleted only once every key was copied. Returns the keys repaired.
    """
    log_path = mirror.repair_log
    working = log_path.with_name(log_path.name + ".repairing")
    if not working.exists():
        if not log_path.exists():
            return 0
        os.replace(log_path, working)
    keys = list(dict.fromkeys(json.loads(line)["key"] for line in working.read_text().splitlines() if line))
    for start in range(0, len(keys), _BATCH):
        await mirror.recopy(keys[start : start + _BATCH])
    working.unlink()
    return len(keys)
