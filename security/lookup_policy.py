"""The guest statement look-up lockout policy of one clinic, within SECURITY.md's bounds.

A clinic chooses three numbers (Tenant.lookup_statement_failure_limit,
lookup_ip_failure_limit, lookup_lockout_minutes). The bounds below are what
any page that edits them validates against (`LOOKUP_LOCKOUT_VALIDATORS`,
`validate_lookup_lockout`), and `LookupLockoutPolicy.for_tenant` clamps a
stored value into them again, so a row written around the form (a shell,
the admin, SQL) can never weaken the lockout below SECURITY.md:

- at most 10 failures per statement, then a lock of at least 30 minutes;
- the per-address counter is per clinic and higher (10..500), because a
  clinic kiosk, a hospital's Wi-Fi or a carrier's NAT is one address for
  many patients; the per-statement counter is what bounds guessing a date
  of birth (decision 0006).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator

# SECURITY.md: at most 10 failures per statement (1 is strict but allowed).
STATEMENT_FAILURE_LIMIT_MIN = 1
STATEMENT_FAILURE_LIMIT_MAX = 10
# Per address and clinic: never below the per-statement ceiling (10), so one
# address is never stricter than SECURITY.md asks; at most 500, so an address
# still locks long before it could walk a clinic's statements.
IP_FAILURE_LIMIT_MIN = 10
IP_FAILURE_LIMIT_MAX = 500
# SECURITY.md: locked at least 30 minutes; at most a day, so a lock is a pause,
# not an outage for a shared address.
LOCKOUT_MINUTES_MIN = 30
LOCKOUT_MINUTES_MAX = 24 * 60

DEFAULT_STATEMENT_FAILURE_LIMIT = 10
DEFAULT_IP_FAILURE_LIMIT = 50
DEFAULT_LOCKOUT_MINUTES = 30


def _between(low: int, high: int, what: str) -> list[Callable[[Any], None]]:
    message = f"Enter {what} from {low} to {high}."
    return [MinValueValidator(low, message=message), MaxValueValidator(high, message=message)]


# Field name (on Tenant and on a settings form) -> its validators.
LOOKUP_LOCKOUT_VALIDATORS: dict[str, list[Callable[[Any], None]]] = {
    "lookup_statement_failure_limit": _between(
        STATEMENT_FAILURE_LIMIT_MIN, STATEMENT_FAILURE_LIMIT_MAX, "a number of failures per statement"
    ),
    "lookup_ip_failure_limit": _between(IP_FAILURE_LIMIT_MIN, IP_FAILURE_LIMIT_MAX, "a number of failures per address"),
    "lookup_lockout_minutes": _between(LOCKOUT_MINUTES_MIN, LOCKOUT_MINUTES_MAX, "a number of minutes"),
}


def validate_lookup_lockout(*, statement_failure_limit: int, ip_failure_limit: int, lockout_minutes: int) -> None:
    """Raise ValidationError (a dict keyed by the Tenant field names) unless all three are within bounds."""
    values = {
        "lookup_statement_failure_limit": statement_failure_limit,
        "lookup_ip_failure_limit": ip_failure_limit,
        "lookup_lockout_minutes": lockout_minutes,
    }
    errors: dict[str, list[ValidationError]] = {}
    for name, value in values.items():
        for validator in LOOKUP_LOCKOUT_VALIDATORS[name]:
            try:
                validator(value)
            except ValidationError as exc:
                errors.setdefault(name, []).append(exc)
                break
    if errors:
        raise ValidationError(errors)


class _HasLookupSettings(Protocol):
    lookup_statement_failure_limit: int
    lookup_ip_failure_limit: int
    lookup_lockout_minutes: int


def _clamp(value: Any, low: int, high: int, default: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        return default
    return max(low, min(high, value))


@dataclass(frozen=True)
class LookupLockoutPolicy:
    statement_failures: int
    ip_failures: int
    minutes: int

    @classmethod
    def for_tenant(cls, tenant: _HasLookupSettings) -> LookupLockoutPolicy:
        """The clinic's settings, each clamped into its bounds (never weaker than SECURITY.md)."""
        return cls(
            statement_failures=_clamp(
                tenant.lookup_statement_failure_limit,
                STATEMENT_FAILURE_LIMIT_MIN,
                STATEMENT_FAILURE_LIMIT_MAX,
                DEFAULT_STATEMENT_FAILURE_LIMIT,
            ),
            ip_failures=_clamp(
                tenant.lookup_ip_failure_limit, IP_FAILURE_LIMIT_MIN, IP_FAILURE_LIMIT_MAX, DEFAULT_IP_FAILURE_LIMIT
            ),
            minutes=_clamp(
                tenant.lookup_lockout_minutes, LOCKOUT_MINUTES_MIN, LOCKOUT_MINUTES_MAX, DEFAULT_LOCKOUT_MINUTES
            ),
        )
