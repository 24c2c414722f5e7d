"""The look-up lockout bounds a clinic's settings are validated against, and the clamp that backs them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.core.exceptions import ValidationError

from portal.models import Tenant
from security.lookup_policy import (
    LOOKUP_LOCKOUT_VALIDATORS,
    LookupLockoutPolicy,
    validate_lookup_lockout,
)


def _settings(statement: object, ip: object, minutes: object) -> SimpleNamespace:
    return SimpleNamespace(
        lookup_statement_failure_limit=statement, lookup_ip_failure_limit=ip, lookup_lockout_minutes=minutes
    )


def test_the_tenant_defaults_are_within_the_bounds() -> None:
    defaults = {name: Tenant().__dict__[name] for name in LOOKUP_LOCKOUT_VALIDATORS}
    assert defaults == {
        "lookup_statement_failure_limit": 10,
        "lookup_ip_failure_limit": 50,
        "lookup_lockout_minutes": 30,
    }
    validate_lookup_lockout(statement_failure_limit=10, ip_failure_limit=50, lockout_minutes=30)


@pytest.mark.parametrize(
    ("statement", "ip", "minutes", "field"),
    [
        (11, 50, 30, "lookup_statement_failure_limit"),  # SECURITY.md: at most 10 per statement
        (0, 50, 30, "lookup_statement_failure_limit"),
        (10, 9, 30, "lookup_ip_failure_limit"),  # a shared address would lock before a statement does
        (10, 501, 30, "lookup_ip_failure_limit"),
        (10, 50, 29, "lookup_lockout_minutes"),  # SECURITY.md: at least 30 minutes
        (10, 50, 24 * 60 + 1, "lookup_lockout_minutes"),
    ],
)
def test_values_outside_the_bounds_are_refused_with_a_message_on_their_field(
    statement: int, ip: int, minutes: int, field: str
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        validate_lookup_lockout(statement_failure_limit=statement, ip_failure_limit=ip, lockout_minutes=minutes)
    assert list(excinfo.value.message_dict) == [field]
    assert excinfo.value.message_dict[field][0].startswith("Enter ")


def test_the_policy_clamps_stored_values_into_the_bounds() -> None:
    assert LookupLockoutPolicy.for_tenant(_settings(3, 120, 60)) == LookupLockoutPolicy(3, 120, 60)
    assert LookupLockoutPolicy.for_tenant(_settings(1000, 30000, 1)) == LookupLockoutPolicy(10, 500, 30)
    assert LookupLockoutPolicy.for_tenant(_settings(0, 1, 0)) == LookupLockoutPolicy(1, 10, 30)
    assert LookupLockoutPolicy.for_tenant(_settings(None, "x", True)) == LookupLockoutPolicy(10, 50, 30)
