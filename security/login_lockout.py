"""Sign-in lockout through django-axes: passwords and second factors share one count.

Policy (settings, SECURITY.md "Lockout"): SETTLE_LOCKOUT_FAILURES failures
lock the account, and separately the client IP, for SETTLE_LOCKOUT_MINUTES.
The IP is portal.net.client_ip, so a forged X-Forwarded-For changes nothing.
Wrong passwords reach axes through Django's authenticate(); wrong one-time
codes are reported here with `login_failure_record`, through the same
`user_login_failed` signal, so ten failures of either kind lock.

An email with no account is counted and locked exactly like one with an
account: the response never tells them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from axes.models import AccessAttempt
from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.db.models import Max, Sum
from django.http import HttpRequest
from django.utils import timezone

# Marks a failure of the second factor in the signal's credentials, so the
# audit receiver records auth.otp_failed rather than auth.login_failed.
FACTOR_KEY = "settle_factor"
FACTOR_OTP = "otp"


def normalize_username(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    # Bounded: the value comes from a form and is stored by axes.
    return value.strip().lower()[:254] or None


def axes_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str | None:
    """AXES_USERNAME_CALLABLE: "Ann@x.org " and "ann@x.org" are one account."""
    if credentials and credentials.get("username") is not None:
        return normalize_username(credentials.get("username"))
    return normalize_username(request.POST.get("username"))


def sign_in_allowed(request: HttpRequest, *, email: str) -> bool:
    """False while the account or the client IP is locked."""
    return bool(AxesProxyHandler.is_allowed(request, {"username": normalize_username(email)}))


def login_failure_record(request: HttpRequest, *, email: str, factor: str) -> bool:
    """Count a failed second factor toward lockout (and audit it); True when now locked.

    Sends Django's user_login_failed, which axes counts and security.signals
    audits.
    """
    user_login_failed.send(
        sender=__name__,
        credentials={"username": normalize_username(email), FACTOR_KEY: factor},
        request=request,
    )
    return bool(getattr(request, "axes_locked_out", False))


def login_failures_clear(*, email: str) -> int:
    """Forget the account's failures (not its IP's); returns how many attempt rows went.

    Called when both factors succeeded and when a clinic admin unlocks the account.
    """
    return int(axes_reset(username=normalize_username(email)))


def lockout_duration() -> timedelta:
    return timedelta(minutes=settings.SETTLE_LOCKOUT_MINUTES)


@dataclass(frozen=True)
class AccountLockout:
    email: str
    failures: int
    last_failure_at: datetime
    locked_until: datetime


def account_lockouts(*, emails: list[str]) -> dict[str, AccountLockout]:
    """The accounts among `emails` that are locked now, by normalised email."""
    wanted = [e for e in (normalize_username(x) for x in emails) if e]
    if not wanted:
        return {}
    since = timezone.now() - lockout_duration()
    rows = (
        AccessAttempt.objects.filter(username__in=wanted, attempt_time__gt=since)
        .values("username")
        .annotate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
    )
    return {
        row["username"]: AccountLockout(
            email=row["username"],
            failures=row["failures"],
            last_failure_at=row["last"],
            locked_until=row["last"] + lockout_duration(),
        )
        for row in rows
        if row["failures"] >= settings.SETTLE_LOCKOUT_FAILURES
    }
