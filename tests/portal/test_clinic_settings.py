"""The clinic settings page: profile, policies, the overview and recent changes, permissions.

Branding and the processor connection have their own files
(test_clinic_settings_branding.py, test_clinic_settings_processor.py).
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from billing.models import CardCheckPolicy, ProcessorAccount
from portal.models import Tenant
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.conftest import Clinic

pytestmark = pytest.mark.django_db

ADMIN = Role.CLINIC_ADMIN.value

PROFILE = {
    "name": "Alpha Family Clinic",
    "timezone": "America/Chicago",
    "support_phone": "+1 555 0100",
    "support_email": "billing@alpha.example",
    "address_line1": "1 Main Street",
    "address_line2": "Suite 200",
    "city": "Springfield",
    "state": "IL",
    "postal_code": "62701",
    "statement_number_hint": "AL-100234",
}

POLICIES = {
    "minimum_payment": "2.50",
    "card_check_policy": CardCheckPolicy.REFUSE,
    "lookup_statement_failure_limit": "5",
    "lookup_lockout_minutes": "60",
    "lookup_ip_failure_limit": "100",
}


def _events(clinic: Clinic, action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(tenant=clinic.tenant, action=action).order_by("sequence"))


def _tenant(clinic: Clinic) -> Tenant:
    return Tenant.objects.get(pk=clinic.tenant.pk)


# --- Access ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["overview", "profile", "branding", "processor", "policies", "approvals"])
def test_clinic_admin_opens_every_section(clinic_a: Clinic, name: str):
    response = clinic_a.client_as(ADMIN).get(reverse(f"clinic_settings:{name}"))
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0") or "no-store" in response["Cache-Control"]


@pytest.mark.parametrize("role", [Role.FRONT_DESK, Role.BILLING_MANAGER, Role.COMPLIANCE_OFFICER])
def test_other_roles_are_refused_and_change_nothing(clinic_a: Clinic, role: str):
    client = clinic_a.client_as(role)
    assert client.get(reverse("clinic_settings:overview")).status_code == 403
    assert client.post(reverse("clinic_settings:profile"), PROFILE).status_code == 403
    assert _tenant(clinic_a).name != PROFILE["name"]
    assert not AuditEvent.objects.filter(action__startswith="settings.").exists()


def test_only_clinic_admins_see_the_settings_link(clinic_a: Clinic):
    settings_url = reverse("clinic_settings:overview")
    assert settings_url in clinic_a.client_as(ADMIN).get(reverse("staff:dashboard")).content.decode()
    assert settings_url not in clinic_a.client_as(Role.BILLING_MANAGER).get(reverse("staff:dashboard")).content.decode()


def test_another_clinics_admin_changes_only_their_own_clinic(clinic_a: Clinic, clinic_b: Clinic):
    response = clinic_b.client_as(ADMIN).post(reverse("clinic_settings:profile"), PROFILE)
    assert response.status_code == 302
    assert _tenant(clinic_b).name == PROFILE["name"]
    assert _tenant(clinic_a).name == "Alpha Clinic"
    # Clinic A's admin on clinic B's host is not a member there.
    assert clinic_b.client(clinic_a.user(ADMIN)).get(reverse("clinic_settings:overview")).status_code == 403


# --- Profile -----------------------------------------------------------------------------


def test_profile_saves_every_field_and_audits_what_changed(clinic_a: Clinic):
    response = clinic_a.client_as(ADMIN).post(reverse("clinic_settings:profile"), PROFILE)
    assert response.status_code == 302
    tenant = _tenant(clinic_a)
    for name, value in PROFILE.items():
        assert getattr(tenant, name) == value, name
    (event,) = _events(clinic_a, "settings.profile_changed")
    assert set(event.details["changed"]) == set(PROFILE)
    assert event.details["timezone_old"] == "America/New_York"
    assert event.details["timezone_new"] == "America/Chicago"
    # Free text is named, never recorded.
    assert "Springfield" not in str(event.details) and "alpha.example" not in str(event.details)
    assert event.actor_user_id == clinic_a.user(ADMIN).public_id and event.actor_role == ADMIN


def test_profile_unchanged_records_nothing(clinic_a: Clinic):
    client = clinic_a.client_as(ADMIN)
    client.post(reverse("clinic_settings:profile"), PROFILE)
    response = client.post(reverse("clinic_settings:profile"), PROFILE, follow=True)
    assert "Nothing changed." in response.content.decode()
    assert len(_events(clinic_a, "settings.profile_changed")) == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "This field is required."),
        ("support_email", "not-an-email", "Enter a valid email address."),
        ("timezone", "Mars/Olympus_Mons", "Select a valid choice."),
        ("postal_code", "1" * 17, "Ensure this value has at most 16 characters"),
    ],
)
def test_bad_profile_input_is_refused_on_its_field_and_saves_nothing(
    clinic_a: Clinic, field: str, value: str, message: str
):
    response = clinic_a.client_as(ADMIN).post(reverse("clinic_settings:profile"), {**PROFILE, field: value})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert f'id="id_{field}_error"' in response.content.decode()
    assert _tenant(clinic_a).name == "Alpha Clinic"
    assert not _events(clinic_a, "settings.profile_changed")


# --- Policies ----------------------------------------------------------------------------


def test_policies_save_money_limits_and_card_check_with_old_and_new_values(clinic_a: Clinic):
    response = clinic_a.client_as(ADMIN).post(reverse("clinic_settings:policies"), POLICIES)
    assert response.status_code == 302
    tenant = _tenant(clinic_a)
    assert tenant.minimum_payment_minor == 250
    assert (tenant.lookup_statement_failure_limit, tenant.lookup_lockout_minutes, tenant.lookup_ip_failure_limit) == (
        5,
        60,
        100,
    )
    with tenant_scope(clinic_a.tenant):
        assert ProcessorAccount.objects.get(tenant=tenant).card_check_policy == CardCheckPolicy.REFUSE
    (event,) = _events(clinic_a, "settings.policies_changed")
    assert event.details["minimum_payment_minor_old"] == 100
    assert event.details["minimum_payment_minor_new"] == 250
    assert event.details["card_check_policy_old"] == "flag"
    assert event.details["card_check_policy_new"] == "refuse"
    assert event.details["lookup_statement_failure_limit_old"] == 10
    assert event.details["lookup_statement_failure_limit_new"] == 5


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lookup_statement_failure_limit", "11", "less than or equal to 10"),
        ("lookup_statement_failure_limit", "0", "greater than or equal to 1"),
        ("lookup_lockout_minutes", "29", "greater than or equal to 30"),
        ("lookup_lockout_minutes", "1441", "less than or equal to 1440"),
        ("lookup_ip_failure_limit", "9", "greater than or equal to 10"),
        ("lookup_ip_failure_limit", "501", "less than or equal to 500"),
        ("minimum_payment", "0", "above zero"),
        ("minimum_payment", "2.505", "at most 2 decimal places"),
        ("minimum_payment", "-1", "Enter an amount such as 25.00."),
        ("minimum_payment", "5000.01", "at most $1,000.00"),
        ("card_check_policy", "ignore", "Select a valid choice."),
    ],
)
def test_policies_out_of_bounds_are_refused_and_nothing_is_saved(
    clinic_a: Clinic, field: str, value: str, message: str
):
    response = clinic_a.client_as(ADMIN).post(reverse("clinic_settings:policies"), {**POLICIES, field: value})
    assert response.status_code == 400
    assert message in response.content.decode()
    tenant = _tenant(clinic_a)
    assert tenant.minimum_payment_minor == 100 and tenant.lookup_lockout_minutes == 30
    with tenant_scope(clinic_a.tenant):
        assert ProcessorAccount.objects.get(tenant=tenant).card_check_policy == CardCheckPolicy.FLAG
    assert not _events(clinic_a, "settings.policies_changed")


def test_the_minimum_payment_reaches_the_pay_page_rules(clinic_a: Clinic):
    clinic_a.client_as(ADMIN).post(reverse("clinic_settings:policies"), {**POLICIES, "minimum_payment": "7"})
    assert _tenant(clinic_a).minimum_payment_minor == 700


# --- Overview and recent changes -----------------------------------------------------------


def test_recent_changes_list_the_audit_trail_newest_first(clinic_a: Clinic):
    client = clinic_a.client_as(ADMIN)
    client.post(reverse("clinic_settings:profile"), PROFILE)
    client.post(reverse("clinic_settings:policies"), POLICIES)
    page = client.get(reverse("clinic_settings:overview")).content.decode()
    assert page.index("card check policy: flag → refuse") < page.index("timezone: America/New_York → America/Chicago")
    assert "name changed" in page
    assert clinic_a.user(ADMIN).email in page
    # A section's page lists only its own changes.
    policies_page = client.get(reverse("clinic_settings:policies")).content.decode()
    assert "flag → refuse" in policies_page and "America/Chicago" not in policies_page.split("Recent changes")[1]


def test_overview_shows_current_values(clinic_a: Clinic):
    page = clinic_a.client_as(ADMIN).get(reverse("clinic_settings:overview")).content.decode()
    assert "Test mode" in page
    assert "$1.00" in page
    assert "#1f6feb" in page
