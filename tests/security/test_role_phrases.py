"""Roles named in sentences read as English: "as a front desk staff member", not "as a front desk".

One helper (security.roles.role_phrase) names a role with its article; these
tests follow it into every message that puts a role in running text.
"""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.urls import reverse

from portal.tenancy.context import tenant_scope
from security.models import Membership, Role
from security.permissions import ACCESS_ROLES
from security.roles import ROLE_NOUNS, role_phrase
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ADMIN = Role.CLINIC_ADMIN.value
LINK = re.compile(r"https?://[^\s/]+(/staff/team/invitations/[A-Za-z0-9_-]+/)")


@pytest.mark.parametrize(
    ("role", "phrase"),
    [
        (Role.FRONT_DESK, "a front desk staff member"),
        (Role.BILLING_MANAGER, "a billing manager"),
        (Role.CLINIC_ADMIN, "a clinic admin"),
        (Role.COMPLIANCE_OFFICER, "a compliance officer"),
        ("break_glass", "a Settle platform operator on emergency access"),
    ],
)
def test_role_phrase_gives_the_noun_with_its_article(role, phrase):
    assert role_phrase(role) == phrase


def test_every_role_a_person_can_hold_has_a_noun():
    assert set(ACCESS_ROLES) <= set(ROLE_NOUNS)


def test_the_invitation_email_and_page_name_the_role(clinic_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = clinic_a.client_as(ADMIN).post(
            reverse("team:invite"), {"email": "new.hire@example.org", "role": Role.FRONT_DESK}
        )
    assert response.status_code == 302
    body = str(mail.outbox[-1].body)
    assert "on Settle as a front desk staff member." in body
    assert "as a front desk." not in body

    match = LINK.search(body)
    assert match
    invitee = clinic_a.client()
    invitee.get(match.group(1))
    page = invitee.get(reverse("team:accept", kwargs={"token": "accept"})).content.decode()
    assert "as <strong>a front desk staff member</strong>" in page


def test_the_role_change_notice_and_refusal_name_the_role(clinic_a):
    with tenant_scope(clinic_a.tenant):
        target = Membership.objects.get(tenant=clinic_a.tenant, user=clinic_a.user(Role.FRONT_DESK))
    path = reverse("team:member-role", kwargs={"membership_id": target.public_id})
    admin = clinic_a.client_as(ADMIN)

    changed = admin.post(path, {"role": Role.BILLING_MANAGER}, follow=True)
    assert "They are now a billing manager." in changed.content.decode()

    again = admin.post(path, {"role": Role.BILLING_MANAGER})
    assert again.status_code == 400
    assert "This person is already a billing manager." in again.content.decode()


def test_the_dashboard_greets_with_the_role_in_a_sentence(clinic_a):
    page = clinic_a.client_as(Role.FRONT_DESK).get(reverse("staff:dashboard")).content.decode()
    assert f"Signed in to {clinic_a.tenant.name} as a front desk staff member." in page


def test_the_break_glass_alert_names_the_operators_role(clinic_a, django_capture_on_commit_callbacks):
    operator = UserFactory.create(email="oncall@platform.example", is_platform_operator=True, is_staff=True)
    reason = "INC-2041: the clinic's only admin is locked out and cannot sign in."
    with django_capture_on_commit_callbacks(execute=True):
        response = clinic_a.client(operator).post(reverse("breakglass:start"), {"reason": reason, "minutes": "30"})
    assert response.status_code == 302
    body = str(mail.outbox[0].body)
    assert "as a Settle platform operator on emergency access" in body
