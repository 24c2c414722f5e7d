"""Audit coverage scenarios: team (see tests/audit/scenarios.py).

Each performs one staff-management act through the HTTP views as the alpha
clinic's admin. Scenarios that need the invitation email take `capture`
(django_capture_on_commit_callbacks): the email is sent once the
invitation's transaction commits.
"""

from __future__ import annotations

import re
from typing import Any

from django.core import mail
from django.test import Client
from django.urls import reverse

from portal.tenancy.context import tenant_scope
from security.models import Membership, Role, StaffInvitation
from tests.audit.scenarios import scenario
from tests.conftest import Clinic

ADMIN = Role.CLINIC_ADMIN.value
INVITEE = "invitee@example.org"
_LINK = re.compile(r"https?://[^\s/]+(/staff/team/invitations/[A-Za-z0-9_-]+/)")


def _member_url(clinic: Clinic, name: str, role: str = Role.FRONT_DESK) -> str:
    with tenant_scope(clinic.tenant):
        membership = Membership.objects.get(tenant=clinic.tenant, user=clinic.user(role))
    return reverse(f"team:{name}", kwargs={"membership_id": membership.public_id})


def _invite(clinic: Clinic, admin: Client | None = None) -> None:
    response = (admin or clinic.client_as(ADMIN)).post(
        reverse("team:invite"), {"email": INVITEE, "role": Role.BILLING_MANAGER}
    )
    assert response.status_code == 302, response.status_code


@scenario("staff.invited")
def _invited(clinic: Clinic) -> None:
    _invite(clinic)


@scenario("staff.invitation_revoked")
def _invitation_revoked(clinic: Clinic) -> None:
    admin = clinic.client_as(ADMIN)
    _invite(clinic, admin)
    with tenant_scope(clinic.tenant):
        invitation = StaffInvitation.objects.get(tenant=clinic.tenant, email=INVITEE)
    response = admin.post(reverse("team:invitation-revoke", kwargs={"invitation_id": invitation.public_id}))
    assert response.status_code == 302


@scenario("staff.invitation_accepted")
def _invitation_accepted(clinic: Clinic, capture: Any) -> None:
    with capture(execute=True):
        _invite(clinic)
    match = _LINK.search(str(mail.outbox[-1].body))
    assert match is not None
    browser = clinic.client()
    opened = browser.get(match.group(1))
    password = "Ledger-pencil-42-harbour"
    accepted = browser.post(
        opened["Location"], {"full_name": "New Hire", "password": password, "password_confirm": password}
    )
    assert accepted.status_code == 302, accepted.status_code


@scenario("staff.role_changed")
def _role_changed(clinic: Clinic) -> None:
    response = clinic.client_as(ADMIN).post(_member_url(clinic, "member-role"), {"role": Role.BILLING_MANAGER})
    assert response.status_code == 302


@scenario("staff.deactivated")
def _deactivated(clinic: Clinic) -> None:
    assert clinic.client_as(ADMIN).post(_member_url(clinic, "member-deactivate")).status_code == 302


@scenario("staff.reactivated")
def _reactivated(clinic: Clinic) -> None:
    with tenant_scope(clinic.tenant):
        Membership.objects.filter(tenant=clinic.tenant, user=clinic.user(Role.FRONT_DESK)).update(is_active=False)
    assert clinic.client_as(ADMIN).post(_member_url(clinic, "member-reactivate")).status_code == 302


@scenario("staff.mfa_reset")
def _mfa_reset(clinic: Clinic) -> None:
    assert clinic.client_as(ADMIN).post(_member_url(clinic, "member-mfa-reset")).status_code == 302


@scenario("staff.unlocked")
def _unlocked(clinic: Clinic) -> None:
    browser = clinic.client()
    for n in range(10):
        browser.post(
            reverse("staff:login"), {"username": clinic.user(Role.FRONT_DESK).email, "password": f"wrong-{n}-password"}
        )
    assert clinic.client_as(ADMIN).post(_member_url(clinic, "member-unlock")).status_code == 302
