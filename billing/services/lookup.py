"""Guest statement look-up: statement number + date of birth.

One generic failure message whatever was wrong. Failures count toward a
lockout of the statement number and of the client address, both at this
clinic; either being locked refuses the look-up without checking it, so a
locked attacker learns nothing more. The thresholds and duration are the
clinic's (security.lookup_policy, within SECURITY.md's bounds): the
per-statement counter bounds guessing a date of birth; the per-address one
is higher and per clinic, because a kiosk or shared Wi-Fi is one address for
many patients, and failures at one clinic must not lock out another's
(decision 0006).
"""

from __future__ import annotations

import datetime
import hmac
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction

from audit.models import Outcome
from audit.recorder import audit_record
from billing.models import Statement
from billing.services.statements import normalize_statement_number
from portal.models import Tenant
from security import lockout, ratelimit
from security.crypto.fields import blind_index_filter
from security.lookup_policy import LookupLockoutPolicy

# Look-ups per IP per minute before we slow down, independent of lockout.
LOOKUP_RATE_PER_MINUTE = 20


class LookupFailed(Exception):
    """No statement matched. Deliberately says nothing about which part."""


class LookupLocked(Exception):
    """Too many failures from this address or for this statement number (at this clinic)."""

    def __init__(self, *, minutes: int) -> None:
        super().__init__("look-up locked")
        self.minutes = minutes  # how long a lock lasts at this clinic (what the guest is told)


class LookupRateLimited(Exception):
    pass


@dataclass(frozen=True)
class LookupKeys:
    rate: str  # the address, everywhere: the per-minute burst limit
    ip: str  # the address at this clinic: the lockout
    statement: str  # the statement number at this clinic: the lockout

    @property
    def lockout(self) -> list[str]:
        return [self.ip, self.statement]


def _keys(*, tenant: Tenant, number: str, ip: str) -> LookupKeys:
    return LookupKeys(
        rate=lockout.lockout_key("lookup-ip", ip),
        ip=lockout.lockout_key("lookup-ip", str(tenant.pk), ip),
        statement=lockout.lockout_key("lookup-statement", str(tenant.pk), number),
    )


def _record_failure(keys: LookupKeys, policy: LookupLockoutPolicy) -> bool:
    """Count the failure against the address and the statement; True when either is now locked."""
    duration = timedelta(minutes=policy.minutes)
    ip_locked = lockout.record_failure(keys.ip, threshold=policy.ip_failures, duration=duration)
    statement_locked = lockout.record_failure(keys.statement, threshold=policy.statement_failures, duration=duration)
    return ip_locked or statement_locked


def statement_lookup(
    *, tenant: Tenant, number: str, date_of_birth: datetime.date, ip: str, request: object | None = None
) -> Statement:
    """Find the statement a guest asks for, or raise.

    Raises LookupRateLimited, LookupLocked or LookupFailed. Every outcome is
    audited (with the statement's public id when it matched, never the
    number or date of birth that were typed).
    """
    normalized = normalize_statement_number(number)
    keys = _keys(tenant=tenant, number=normalized, ip=ip)
    policy = LookupLockoutPolicy.for_tenant(tenant)
    # The burst limit stays per address across clinics: it only ever delays a minute.
    if not ratelimit.hit("lookup-ip", keys.rate, limit=LOOKUP_RATE_PER_MINUTE, window_seconds=60):
        raise LookupRateLimited
    if lockout.any_locked(keys.lockout):
        with transaction.atomic():
            audit_record(
                action="statement.lookup_locked",
                tenant=tenant,
                outcome=Outcome.DENIED,
                actor_role="guest",
                request=request,  # type: ignore[arg-type]
            )
        raise LookupLocked(minutes=policy.minutes)

    # Through the keyed blind index of the normalised number (the number itself is encrypted).
    statement = (
        Statement.objects.select_related("patient")
        .filter(blind_index_filter(tenant_id=tenant.pk, model=Statement, field_name="number_index", values=[number]))
        .first()
        if normalized
        else None
    )
    # Compare the date even when no statement matched, so timing does not say
    # which part was wrong.
    expected = statement.patient.date_of_birth.isoformat() if statement else "0000-00-00"
    matched = hmac.compare_digest(expected, date_of_birth.isoformat()) and statement is not None

    if not matched:
        locked_now = _record_failure(keys, policy)
        with transaction.atomic():
            audit_record(
                action="statement.lookup",
                tenant=tenant,
                outcome=Outcome.FAILURE,
                actor_role="guest",
                request=request,  # type: ignore[arg-type]
                details={"locked": locked_now},
            )
        if locked_now:
            raise LookupLocked(minutes=policy.minutes)
        raise LookupFailed

    assert statement is not None
    lockout.reset(keys.statement)
    with transaction.atomic():
        audit_record(
            action="statement.lookup",
            tenant=tenant,
            outcome=Outcome.SUCCESS,
            actor_role="guest",
            target_type="statement",
            target_id=str(statement.public_id),
            request=request,  # type: ignore[arg-type]
        )
    return statement
