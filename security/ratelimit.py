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
    if cache.add(cache_key, 1, timeout=window_seconds + 1):
        return 1 <= limit
    try:
        count = cache.incr(cache_key)
    except ValueError:
        # The key expired or was evicted between add() and incr(): this hit
        # opens a new count.
        cache.add(cache_key, 1, timeout=window_seconds + 1)
        count = 1
    return count <= limit
