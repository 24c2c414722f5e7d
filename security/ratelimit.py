"""Fixed-window rate limits in the cache (Redis in production).

Limits slow down automated abuse (card testing, look-up guessing); lockout
(security.lockout) is the hard stop.
"""

from __future__ import annotations

import time

from django.core.cache import cache


def hit(bucket: str, key: str, *, limit: int, window_seconds: int) -> bool:
    """Count one hit; returns True while the caller is within its limit."""
    window = int(time.time() // window_seconds)
    cache_key = f"rl:{bucket}:{key}:{window}"
    added = cache.add(cache_key, 1, timeout=window_seconds + 1)
    count = 1 if added else cache.incr(cache_key)
    return count <= limit
