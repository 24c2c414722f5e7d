"""Audit coverage scenarios: the clinic settings page (see tests/audit/scenarios.py).

Each performs one change through the HTTP views as the alpha clinic's admin.
Processor answers are scripted (tests.portal.settings_support.FakeAdmin).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.urls import reverse

from billing.models import ProcessorAccount
from billing.processor import set_processor_admin_factory
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.audit.scenarios import scenario
from tests.conftest import Clinic
from tests.portal.settings_support import FakeAdmin

ADMIN = Role.CLINIC_ADMIN.value


@contextmanager
def _processor(**answers: object) -> Iterator[FakeAdmin]:
    fake = FakeAdmin(**answers)  # type: ignore[arg-type]
    set_processor_admin_factory(fake)
    try:
        yield fake
    finally:
        set_processor_admin_factory(None)


def _post(clinic: Clinic, name: str, data: dict[str, str]) -> None:
    response = clinic.client_as(ADMIN).post(reverse(f"clinic_settings:{name}"), data)
    assert response.status_code == 302, response.status_code


@scenario("settings.profile_changed")
def _profile_changed(clinic: Clinic) -> None:
    _post(clinic, "profile", {"name": "Alpha Family Clinic", "timezone": "America/Denver"})


@scenario("settings.branding_changed")
def _branding_changed(clinic: Clinic) -> None:
    _post(clinic, "branding", {"brand_colour": "#0b5394"})


@scenario("settings.processor_keys_changed")
def _processor_keys_changed(clinic: Clinic) -> None:
    # Same mode as the clinic's keys: the webhook stays, so only the keys event.
    with _processor():
        _post(clinic, "processor", {"publishable_key": "pk_test_replacement", "secret_key": "sk_test_replacement"})


@scenario("settings.webhook_registered")
def _webhook_registered(clinic: Clinic) -> None:
    with _processor():
        _post(clinic, "webhook-register", {})


@scenario("settings.webhook_secret_changed")
def _webhook_secret_changed(clinic: Clinic) -> None:
    _post(clinic, "webhook-secret", {"webhook_secret": "whsec_entered_by_hand_0001"})
    with tenant_scope(clinic.tenant):
        assert ProcessorAccount.objects.get(tenant=clinic.tenant).webhook_secret == "whsec_entered_by_hand_0001"


@scenario("settings.policies_changed")
def _policies_changed(clinic: Clinic) -> None:
    _post(
        clinic,
        "policies",
        {
            "minimum_payment": "5.00",
            "card_check_policy": "refuse",
            "lookup_statement_failure_limit": "5",
            "lookup_lockout_minutes": "45",
            "lookup_ip_failure_limit": "50",
        },
    )


@scenario("settings.approval_limits_changed")
def _approval_limits_changed(clinic: Clinic) -> None:
    limits = {
        "front_desk_limit_minor": "25.00",
        "billing_manager_limit_minor": "500.00",
        "clinic_admin_limit_minor": "500.00",
        "front_desk_adjustment_limit_minor": "0",
        "billing_manager_adjustment_limit_minor": "50.00",
        "clinic_admin_adjustment_limit_minor": "500.00",
    }
    _post(clinic, "approvals", limits)
