"""Lockout counters, per key (a statement, an address at a clinic).

By default the policy of staff sign-in (django-axes, security.login_lockout):
SETTLE_LOCKOUT_FAILURES failures within SETTLE_LOCKOUT_MINUTES lock the key
for SETTLE_LOCKOUT_MINUTES. Guest statement look-ups pass their clinic's own
threshold and duration (security.lookup_policy, within the same bounds).
Guests have no account for axes to count against, so look-ups keep their own
counters, keyed by a keyed hash so no statement number or address is stored
in clear. Counters live in the database so every web process sees the same
state.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from security.models import LockoutCounter

LOCKOUT_THRESHOLD = settings.SETTLE_LOCKOUT_FAILURES
LOCKOUT_WINDOW = timedelta(minutes=settings.SETTLE_LOCKOUT_MINUTES)
LOCKOUT_DURATION = timedelta(minutes=settings.SETTLE_LOCKOUT_MINUTES)


def lockout_key(kind: str, *parts: str) -> str:
    """A keyed hash naming what is counted, without storing it in clear."""
    message = "\x1f".join((kind, *parts)).encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def is_locked(key: str) -> bool:
    counter = LockoutCounter.objects.filter(key=key).first()
    return bool(counter and counter.locked_until and counter.locked_until > timezone.now())


def any_locked(keys: list[str]) -> bool:
    now = timezone.now()
    return LockoutCounter.objects.filter(key__in=keys, locked_until__gt=now).exists()


def record_failure(key: str, *, threshold: int = LOCKOUT_THRESHOLD, duration: timedelta = LOCKOUT_DURATION) -> bool:
    """Count a failure; returns True when the key is now locked.

    `threshold` failures within `duration` lock the key for `duration`.
    """
    now = timezone.now()
    with transaction.atomic():
        counter, created = LockoutCounter.objects.select_for_update().get_or_create(
            key=key, defaults={"failures": 0, "first_failure_at": now}
        )
        expired_lock = counter.locked_until is not None and counter.locked_until <= now
        stale_window = counter.first_failure_at + duration <= now and counter.locked_until is None
        if expired_lock or stale_window:
            counter.failures = 0
            counter.first_failure_at = now
            counter.locked_until = None
        counter.failures += 1
        if counter.failures >= threshold and counter.locked_until is None:
            counter.locked_until = now + duration
        counter.save(update_fields=["failures", "first_failure_at", "locked_until"])
        return counter.locked_until is not None and counter.locked_until > now


def reset(key: str) -> None:
    LockoutCounter.objects.filter(key=key).delete()
