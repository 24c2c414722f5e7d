"""Onboarding and running clinics (security.clinics): create with the first admin's invitation, edit, suspend.

Bad input (slug or domain taken, reserved, malformed; unknown time zone;
refused email) is refused with a message naming the problem and leaves
nothing behind: no clinic, no invitation, no audit event, no email.
"""

from __future__ import annotations

import pytest
from django.core import mail

from audit.models import AuditEvent
from portal.models import RESERVED_SLUGS, Tenant
from portal.tenancy.context import platform_scope, tenant_scope
from security.clinics import (
    ClinicInvalid,
    ClinicProfile,
    ClinicStateError,
    access_clinic_by_uuid,
    clinic_admin_invite,
    clinic_create,
    clinic_reactivate,
    clinic_suspend,
    clinic_update,
)
from security.models import Role, StaffInvitation, User
from security.permissions import PLATFORM_OPERATOR_ROLE
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

LAKESIDE = ClinicProfile(
    name="Lakeside Pediatrics",
    timezone="America/Chicago",
    support_phone="+1 312 555 0142",
    support_email="Billing@Lakeside.example",
)


@pytest.fixture
def operator() -> User:
    return UserFactory.create(email="op@platform.example", is_platform_operator=True, is_staff=True)


def _platform_events(action: str) -> list[AuditEvent]:
    with platform_scope():
        return list(AuditEvent.objects.filter(action=action, tenant__isnull=True))


def _nothing_saved(slug: str) -> None:
    assert not Tenant.objects.filter(slug=slug).exists()
    with platform_scope():
        assert not StaffInvitation.objects.exists()
    assert _platform_events("platform.clinic_created") == []


def test_create_puts_the_clinic_on_the_platform_and_invites_its_admin_on_commit(
    operator, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        tenant, invitation = clinic_create(
            actor=operator, slug=" Lakeside ", currency="USD", profile=LAKESIDE, admin_email="Ada@Lakeside.example"
        )
    assert (tenant.slug, tenant.name, tenant.timezone, tenant.currency) == (
        "lakeside",
        "Lakeside Pediatrics",
        "America/Chicago",
        "USD",
    )
    assert tenant.support_email == "billing@lakeside.example"
    assert tenant.suspended_at is None and tenant.is_active
    assert invitation is not None and invitation.email == "ada@lakeside.example"
    assert invitation.role == Role.CLINIC_ADMIN and invitation.tenant_id == tenant.pk
    [created] = _platform_events("platform.clinic_created")
    assert created.actor_role == PLATFORM_OPERATOR_ROLE and created.target_id == str(tenant.public_id)
    assert created.details["invitation"] == str(invitation.public_id)
    with tenant_scope(tenant):
        [invited] = AuditEvent.objects.filter(action="staff.invited", tenant=tenant)
    assert invited.actor_role == PLATFORM_OPERATOR_ROLE
    [message] = mail.outbox
    assert message.to == ["ada@lakeside.example"]
    assert "lakeside.localhost" in message.body and "as a clinic admin" in message.body


def test_the_invitation_email_waits_for_the_commit(operator, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        clinic_create(actor=operator, slug="lakeside", currency="USD", profile=LAKESIDE, admin_email="a@l.example")
    assert mail.outbox == []
    assert len(callbacks) == 1


def test_create_without_an_admin_email_invites_nobody(operator):
    tenant, invitation = clinic_create(actor=operator, slug="lakeside", currency="USD", profile=LAKESIDE)
    assert invitation is None
    [created] = _platform_events("platform.clinic_created")
    assert created.details["invitation"] is None
    assert tenant.custom_domain is None and tenant.custom_domain_token == ""


@pytest.mark.parametrize(
    ("slug", "problem"),
    [
        ("", "Enter the clinic's address"),
        ("ab", "is not a valid address"),
        ("-lakeside", "is not a valid address"),
        ("lake side", "is not a valid address"),
        ("lakeside_", "is not a valid address"),
        ("x" * 41, "is not a valid address"),
        ("www", "is reserved"),
        ("admin", "is reserved"),
        ("api", "is reserved"),
        ("static", "is reserved"),
    ],
)
def test_a_bad_slug_is_refused_naming_the_problem_and_nothing_is_saved(operator, slug, problem):
    with pytest.raises(ClinicInvalid) as refused:
        clinic_create(actor=operator, slug=slug, currency="USD", profile=LAKESIDE, admin_email="a@lakeside.example")
    assert problem in " ".join(refused.value.errors["slug"])
    _nothing_saved(slug.strip().lower())
    assert mail.outbox == []


def test_every_reserved_slug_is_refused(operator):
    for slug in sorted(RESERVED_SLUGS):
        if len(slug) < 3:
            continue
        with pytest.raises(ClinicInvalid, match="reserved"):
            clinic_create(actor=operator, slug=slug, currency="USD", profile=LAKESIDE)


def test_a_taken_slug_is_refused(operator):
    clinic_create(actor=operator, slug="lakeside", currency="USD", profile=LAKESIDE)
    with pytest.raises(ClinicInvalid) as refused:
        clinic_create(actor=operator, slug="lakeside", currency="USD", profile=LAKESIDE, admin_email="b@l.example")
    assert refused.value.errors == {"slug": ["'lakeside' is already taken by another clinic. Choose another address."]}
    assert Tenant.objects.filter(slug="lakeside").count() == 1
    with platform_scope():
        assert not StaffInvitation.objects.exists()


@pytest.mark.parametrize(
    ("domain", "problem"),
    [
        ("https://pay.lakeside.example/", "domain name only"),
        ("pay.lakeside.example/pay", "domain name only"),
        ("10.0.0.1", "not an IP address"),
        ("lakeside", "not a valid domain name"),
        ("pay..lakeside.example", "not a valid domain name"),
        ("pay_lakeside.example", "not a valid domain name"),
        ("-pay.lakeside.example", "not a valid domain name"),
        ("pay.lakeside.123", "not a valid domain name"),
        ("localhost", "reserved"),
        ("evil.localhost", "reserved"),
    ],
)
def test_a_bad_domain_is_refused_naming_the_problem(operator, domain, problem):
    profile = ClinicProfile(name="Lakeside Pediatrics", timezone="America/Chicago", custom_domain=domain)
    with pytest.raises(ClinicInvalid) as refused:
        clinic_create(actor=operator, slug="lakeside", currency="USD", profile=profile)
    assert problem in " ".join(refused.value.errors["custom_domain"])
    _nothing_saved("lakeside")


def test_a_domain_taken_by_another_clinic_is_refused(operator):
    first = ClinicProfile(name="First", timezone="UTC", custom_domain="pay.shared.example")
    clinic_create(actor=operator, slug="first", currency="USD", profile=first)
    second = ClinicProfile(name="Second", timezone="UTC", custom_domain="PAY.Shared.example.")
    with pytest.raises(ClinicInvalid) as refused:
        clinic_create(actor=operator, slug="second", currency="USD", profile=second)
    assert refused.value.errors == {"custom_domain": ["pay.shared.example is already used by another clinic."]}
    assert not Tenant.objects.filter(slug="second").exists()


def test_all_problems_are_reported_at_once(operator):
    profile = ClinicProfile(name=" ", timezone="Mars/Olympus", support_email="not-an-email", custom_domain="x")
    with pytest.raises(ClinicInvalid) as refused:
        clinic_create(actor=operator, slug="www", currency="XXX", profile=profile)
    assert set(refused.value.errors) == {"slug", "name", "timezone", "support_email", "custom_domain", "currency"}
    _nothing_saved("www")


def test_a_refused_admin_email_rolls_the_clinic_back(operator):
    with pytest.raises(ClinicInvalid) as refused:
        clinic_create(actor=operator, slug="lakeside", currency="USD", profile=LAKESIDE, admin_email="no-at-sign")
    assert refused.value.errors == {"admin_email": ["Enter a valid email address."]}
    _nothing_saved("lakeside")


def test_a_custom_domain_gets_a_token_and_waits_for_verification(operator):
    profile = ClinicProfile(name="Lakeside", timezone="UTC", custom_domain="Pay.Lakeside.example")
    tenant, _ = clinic_create(actor=operator, slug="lakeside", currency="USD", profile=profile)
    assert tenant.custom_domain == "pay.lakeside.example"
    assert tenant.custom_domain_token.startswith("settle-verify-") and len(tenant.custom_domain_token) <= 64
    assert tenant.custom_domain_verified_at is None


def test_update_changes_the_profile_and_audits_the_field_names(operator):
    tenant, _ = clinic_create(actor=operator, slug="lakeside", currency="USD", profile=LAKESIDE)
    changed = clinic_update(
        actor=operator,
        tenant=tenant,
        profile=ClinicProfile(
            name="Lakeside Children's Clinic",
            timezone="America/Chicago",
            support_phone="+1 312 555 0142",
            support_email="billing@lakeside.example",
        ),
    )
    assert changed == ["name"]
    tenant.refresh_from_db()
    assert tenant.name == "Lakeside Children's Clinic"
    [event] = _platform_events("platform.clinic_updated")
    assert event.details == {"fields": ["name"]}


def test_update_without_changes_records_nothing(operator):
    tenant, _ = clinic_create(actor=operator, slug="lakeside", currency="USD", profile=LAKESIDE)
    profile = ClinicProfile(
        name=tenant.name,
        timezone=tenant.timezone,
        support_phone=tenant.support_phone,
        support_email=tenant.support_email,
    )
    assert clinic_update(actor=operator, tenant=tenant, profile=profile) == []
    assert _platform_events("platform.clinic_updated") == []


def test_a_new_domain_needs_verifying_again_and_removing_it_clears_the_token(operator):
    profile = ClinicProfile(name="Lakeside", timezone="UTC", custom_domain="pay.lakeside.example")
    tenant, _ = clinic_create(actor=operator, slug="lakeside", currency="USD", profile=profile)
    Tenant.objects.filter(pk=tenant.pk).update(custom_domain_verified_at="2026-01-01T00:00:00Z")
    old_token = tenant.custom_domain_token
    moved = ClinicProfile(name="Lakeside", timezone="UTC", custom_domain="portal.lakeside.example")
    assert clinic_update(actor=operator, tenant=tenant, profile=moved) == ["custom_domain"]
    tenant.refresh_from_db()
    assert tenant.custom_domain_verified_at is None
    assert tenant.custom_domain_token not in ("", old_token)
    clinic_update(actor=operator, tenant=tenant, profile=ClinicProfile(name="Lakeside", timezone="UTC"))
    tenant.refresh_from_db()
    assert (tenant.custom_domain, tenant.custom_domain_token) == (None, "")


def test_update_refuses_bad_input_and_saves_nothing(operator):
    tenant, _ = clinic_create(actor=operator, slug="lakeside", currency="USD", profile=LAKESIDE)
    bad = ClinicProfile(name="Renamed", timezone="Nowhere/City", custom_domain="lakeside.localhost")
    with pytest.raises(ClinicInvalid) as refused:
        clinic_update(actor=operator, tenant=tenant, profile=bad)
    assert set(refused.value.errors) == {"timezone", "custom_domain"}
    tenant.refresh_from_db()
    assert tenant.name == "Lakeside Pediatrics"
    assert _platform_events("platform.clinic_updated") == []


def test_suspend_and_reactivate(operator):
    tenant, _ = clinic_create(actor=operator, slug="lakeside", currency="USD", profile=LAKESIDE)
    suspended = clinic_suspend(actor=operator, tenant=tenant, reason="  Unpaid   platform invoice  ")
    assert suspended.suspended_at is not None and suspended.suspension_reason == "Unpaid platform invoice"
    assert suspended.is_active, "suspension is not disabling"
    [event] = _platform_events("platform.clinic_suspended")
    assert event.details == {}, "the free-text reason stays out of the audit trail"
    with pytest.raises(ClinicStateError, match="already suspended"):
        clinic_suspend(actor=operator, tenant=tenant, reason="A second reason given")
    active = clinic_reactivate(actor=operator, tenant=tenant)
    assert active.suspended_at is None and active.suspension_reason == ""
    assert len(_platform_events("platform.clinic_reactivated")) == 1
    with pytest.raises(ClinicStateError, match="not suspended"):
        clinic_reactivate(actor=operator, tenant=tenant)


@pytest.mark.parametrize("reason", ["", "too short", "x" * 201])
def test_suspension_needs_a_reason_of_sensible_length(operator, reason):
    tenant, _ = clinic_create(actor=operator, slug="lakeside", currency="USD", profile=LAKESIDE)
    with pytest.raises(ClinicInvalid) as refused:
        clinic_suspend(actor=operator, tenant=tenant, reason=reason)
    assert "10 to 200 characters" in refused.value.errors["reason"][0]
    tenant.refresh_from_db()
    assert tenant.suspended_at is None


def test_invite_from_the_clinic_page(operator, django_capture_on_commit_callbacks):
    tenant, _ = clinic_create(actor=operator, slug="lakeside", currency="USD", profile=LAKESIDE)
    with django_capture_on_commit_callbacks(execute=True):
        invitation = clinic_admin_invite(actor=operator, tenant=tenant, email="ada@lakeside.example")
    assert invitation.role == Role.CLINIC_ADMIN
    [event] = _platform_events("platform.admin_invited")
    assert event.details == {"invitation": str(invitation.public_id)}
    assert [m.to for m in mail.outbox] == [["ada@lakeside.example"]]


def test_invite_refuses_someone_already_on_the_staff(operator, clinic_a):
    admin = clinic_a.user(Role.CLINIC_ADMIN)
    with pytest.raises(ClinicInvalid) as refused:
        clinic_admin_invite(actor=operator, tenant=clinic_a.tenant, email=admin.email)
    assert "already on this clinic's staff" in refused.value.errors["admin_email"][0]
    assert _platform_events("platform.admin_invited") == []


def test_access_clinic_by_uuid_is_404_for_an_unknown_id(clinic_a):
    import uuid

    from django.http import Http404

    assert access_clinic_by_uuid(uuid=clinic_a.tenant.public_id) == clinic_a.tenant
    with pytest.raises(Http404):
        access_clinic_by_uuid(uuid=uuid.uuid4())
