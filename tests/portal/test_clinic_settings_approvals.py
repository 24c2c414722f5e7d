"""Settings → Approvals: each role's refund and adjustment limits, set by clinic admins, audited, enforced."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from billing.processor import set_processor_factory
from billing.refund_models import RefundPolicy
from billing.services.refunds import refund_policy_for
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.billing.fakes import FakeProcessor
from tests.billing.test_refunds import ask, paid
from tests.conftest import Clinic

pytestmark = pytest.mark.django_db

ADMIN = Role.CLINIC_ADMIN.value
URL = reverse("clinic_settings:approvals")
LIMITS = {
    "front_desk_limit_minor": "25.00",
    "billing_manager_limit_minor": "750.00",
    "clinic_admin_limit_minor": "1,000.00",
    "front_desk_adjustment_limit_minor": "0",
    "billing_manager_adjustment_limit_minor": "100.00",
    "clinic_admin_adjustment_limit_minor": "500.00",
}


def policy(clinic: Clinic) -> RefundPolicy:
    with tenant_scope(clinic.tenant):
        return refund_policy_for(tenant=clinic.tenant)


def test_the_page_shows_the_current_limits(clinic_a: Clinic) -> None:
    page = clinic_a.client_as(ADMIN).get(URL).content.decode()
    assert 'value="500.00"' in page and 'value="0.00"' in page
    overview = clinic_a.client_as(ADMIN).get(reverse("clinic_settings:overview")).content.decode()
    assert "Refunds: Billing managers" in overview


@pytest.fixture
def scripted_processor():  # type: ignore[no-untyped-def]
    fake = FakeProcessor()
    set_processor_factory(lambda tenant, account: fake)
    yield fake
    set_processor_factory(None)


def test_saving_limits_records_old_and_new_and_the_refunds_follow_them(
    clinic_a: Clinic, scripted_processor: FakeProcessor, django_capture_on_commit_callbacks
) -> None:
    response = clinic_a.client_as(ADMIN).post(URL, LIMITS)
    assert response.status_code == 302
    saved = policy(clinic_a)
    assert (saved.front_desk_limit_minor, saved.billing_manager_limit_minor, saved.clinic_admin_limit_minor) == (
        2_500,
        75_000,
        100_000,
    )
    assert saved.billing_manager_adjustment_limit_minor == 10_000
    [event] = AuditEvent.objects.filter(action="settings.approval_limits_changed")
    assert event.details["front_desk_limit_minor_old"] == 0 and event.details["front_desk_limit_minor_new"] == 2_500
    assert "front_desk_adjustment_limit_minor" not in event.details["changed"]  # unchanged: 0 -> 0
    # The front desk may now refund $25.00 alone, and no more.
    payment = paid(clinic_a)
    assert ask(clinic_a, payment, 2_500, role=Role.FRONT_DESK, capture=django_capture_on_commit_callbacks).sent
    assert not ask(clinic_a, payment, 2_501, role=Role.FRONT_DESK, capture=django_capture_on_commit_callbacks).sent


def test_saving_the_same_limits_records_nothing(clinic_a: Clinic) -> None:
    client = clinic_a.client_as(ADMIN)
    assert client.post(URL, LIMITS).status_code == 302
    assert client.post(URL, LIMITS).status_code == 302
    assert AuditEvent.objects.filter(action="settings.approval_limits_changed").count() == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("front_desk_limit_minor", "-5", ""),
        ("billing_manager_limit_minor", "200000.00", "Enter an amount from 0 to"),
        ("clinic_admin_limit_minor", "12.345", ""),
        ("clinic_admin_adjustment_limit_minor", "", "This field is required."),
    ],
)
def test_a_bad_limit_is_refused_on_its_field_and_nothing_is_saved(
    clinic_a: Clinic, field: str, value: str, message: str
) -> None:
    response = clinic_a.client_as(ADMIN).post(URL, {**LIMITS, field: value})
    assert response.status_code == 400
    page = response.content.decode()
    assert f'id="id_{field}_error"' in page or f"id_{field}" in page
    if message:
        assert message in page
    assert policy(clinic_a).front_desk_limit_minor == 0
    assert not AuditEvent.objects.filter(action="settings.approval_limits_changed").exists()


@pytest.mark.parametrize("role", [Role.FRONT_DESK, Role.BILLING_MANAGER, Role.COMPLIANCE_OFFICER])
def test_only_clinic_admins_set_the_limits(clinic_a: Clinic, role: str) -> None:
    assert clinic_a.client_as(role).post(URL, LIMITS).status_code == 403
    assert policy(clinic_a).front_desk_limit_minor == 0
