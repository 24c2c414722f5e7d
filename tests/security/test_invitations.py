"""Staff invitations: single use, expiring, bound to their clinic, audited.

Personas (tests/conftest.py): alpha's clinic admin invites; beta's staff are
people with a Settle account at another clinic; `outsider` has an account
and no membership. Everything goes through the HTTP views unless a rule is
easier to pin on the service itself (concurrent accepts).
"""

from __future__ import annotations

import hashlib
import re
import threading
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEvent
from portal.tenancy.context import tenant_scope
from security.invitations import (
    INVITATION_LIFETIME,
    InvitationError,
    invitation_accept,
    invitation_create,
    invitation_for_token,
)
from security.login_lockout import account_lockouts
from security.models import Membership, Role, StaffInvitation, User
from security.team_views import ACCEPT_PLACEHOLDER
from tests.conftest import Clinic
from tests.factories import PERSONA_PASSWORD, MembershipFactory, totp_device

pytestmark = pytest.mark.django_db

ADMIN = Role.CLINIC_ADMIN.value
NEW_EMAIL = "new.hire@example.org"
GOOD_PASSWORD = "Ledger-pencil-42-harbour"
ACCEPT_PAGE = reverse("team:accept", kwargs={"token": ACCEPT_PLACEHOLDER})
LINK = re.compile(r"https?://[^\s/]+(/staff/team/invitations/([A-Za-z0-9_-]+)/)")
NON_ADMIN_ROLES = [r for r in Role.values if r not in (Role.CLINIC_ADMIN, Role.PATIENT)]


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("sequence"))


def invite(clinic: Clinic, capture, *, email: str = NEW_EMAIL, role: str = Role.BILLING_MANAGER, client=None):
    """POST the invite form as the clinic's admin, running on-commit work (the email)."""
    client = client or clinic.client_as(ADMIN)
    with capture(execute=True):
        return client.post(reverse("team:invite"), {"email": email, "role": role})


def link_in(message: mail.EmailMessage) -> tuple[str, str]:
    """(absolute link, path) of the invitation link in an email."""
    match = LINK.search(str(message.body))
    assert match, message.body
    return match.group(0), match.group(1)


def invited(clinic: Clinic, capture, **kwargs) -> str:
    """Invite and return the link's path (the email's)."""
    response = invite(clinic, capture, **kwargs)
    assert response.status_code == 302, response.content.decode()[:2000]
    return link_in(mail.outbox[-1])[1]


def open_link(client: Client, path: str):
    """Follow the emailed link as a browser would: the token moves into the session."""
    first = client.get(path)
    assert first.status_code == 302 and first["Location"] == ACCEPT_PAGE, first.status_code
    return client.get(ACCEPT_PAGE)


def new_account_data(**overrides: str) -> dict[str, str]:
    data = {"full_name": "Nadia Hire", "password": GOOD_PASSWORD, "password_confirm": GOOD_PASSWORD}
    data.update(overrides)
    return data


def invitation_of(clinic: Clinic, email: str = NEW_EMAIL) -> StaffInvitation:
    with tenant_scope(clinic.tenant):
        return StaffInvitation.objects.filter(tenant=clinic.tenant, email=email).latest("created_at")


def membership_of(clinic: Clinic, user: User) -> Membership | None:
    with tenant_scope(clinic.tenant):
        return Membership.objects.filter(tenant=clinic.tenant, user=user).first()


# --------------------------------------------------------------------------------------
# Inviting
# --------------------------------------------------------------------------------------


def test_admin_invites_and_the_email_carries_a_link_whose_token_is_stored_only_hashed(
    clinic_a, django_capture_on_commit_callbacks
):
    before = timezone.now()
    response = invite(clinic_a, django_capture_on_commit_callbacks, email="  New.Hire@Example.ORG ")
    assert response.status_code == 302 and response["Location"] == reverse("team:list")

    invitation = invitation_of(clinic_a)
    assert invitation.email == NEW_EMAIL, "normalised to lower case, trimmed"
    assert invitation.role == Role.BILLING_MANAGER
    assert invitation.invited_by == clinic_a.user(ADMIN)
    assert before + INVITATION_LIFETIME <= invitation.expires_at <= timezone.now() + INVITATION_LIFETIME
    assert invitation.is_pending

    [message] = mail.outbox
    assert message.to == [NEW_EMAIL]
    link, path = link_in(message)
    assert link.startswith("http://alpha.localhost") and "Alpha Clinic" in message.body
    token = path.rstrip("/").rsplit("/", 1)[1]
    assert len(token) == 43
    assert invitation.token_hash == hashlib.sha256(token.encode()).hexdigest()
    with tenant_scope(clinic_a.tenant):
        assert token not in str(StaffInvitation.objects.filter(pk=invitation.pk).values().first())

    [event] = events("staff.invited")
    assert event.tenant_id == clinic_a.tenant.pk
    assert event.actor_role == ADMIN
    assert (event.target_type, event.target_id) == ("invitation", str(invitation.public_id))
    assert event.details == {"role": "billing_manager", "replaces": []}


def test_the_team_page_lists_the_pending_invitation_with_a_revoke_button(clinic_a, django_capture_on_commit_callbacks):
    invited(clinic_a, django_capture_on_commit_callbacks)
    page = clinic_a.client_as(ADMIN).get(reverse("team:list")).content.decode()
    invitation = invitation_of(clinic_a)
    assert NEW_EMAIL in page
    assert reverse("team:invitation-revoke", kwargs={"invitation_id": invitation.public_id}) in page


def test_inviting_the_same_email_again_replaces_the_pending_invitation(clinic_a, django_capture_on_commit_callbacks):
    old_path = invited(clinic_a, django_capture_on_commit_callbacks)
    old = invitation_of(clinic_a)
    new_path = invited(clinic_a, django_capture_on_commit_callbacks, role=Role.FRONT_DESK)

    old.refresh_from_db()
    assert old.revoked_at is not None
    with tenant_scope(clinic_a.tenant):
        assert StaffInvitation.objects.filter(email=NEW_EMAIL, revoked_at__isnull=True).count() == 1
    assert clinic_a.client().get(old_path).status_code == 404, "the replaced link no longer works"
    assert open_link(clinic_a.client(), new_path).status_code == 200
    second = events("staff.invited")[1]
    assert second.details == {"role": "front_desk", "replaces": [str(old.public_id)]}
    assert events("staff.invitation_revoked") == [], "replacing is part of the one staff.invited event"


def test_an_active_member_of_this_clinic_is_refused_with_a_clear_message(clinic_a, django_capture_on_commit_callbacks):
    email = clinic_a.user("front_desk").email
    response = invite(clinic_a, django_capture_on_commit_callbacks, email=email.upper())
    assert response.status_code == 400
    assert f"{email} is already on this clinic&#x27;s staff." in response.content.decode()
    with tenant_scope(clinic_a.tenant):
        assert not StaffInvitation.objects.exists()
    assert mail.outbox == [] and events("staff.invited") == []


def _normalised_invite_response(clinic, capture, email):
    response = invite(clinic, capture, email=email)
    follow = clinic.client_as(ADMIN).get(response["Location"]) if response.status_code == 302 else response
    body = mail.outbox[-1].body if mail.outbox else ""
    page = follow.content.decode().replace(email, "EMAIL")
    page = re.sub(r"csrfmiddlewaretoken\" value=\"[^\"]+\"", "", page)
    page = re.sub(r"nonce=\"[^\"]+\"", "", page)  # the CSP nonce differs per response
    page = re.sub(r"/invitations/[0-9a-f-]{36}/revoke/", "/invitations/ID/revoke/", page)
    page = re.sub(r"\w{3} \d{1,2}, \d{4} \d{1,2}:\d{2} [AP]M", "TIME", page)
    return response.status_code, page, LINK.sub("LINK", body.replace(email, "EMAIL"))


def test_inviting_someone_with_an_account_at_another_clinic_looks_like_inviting_a_stranger(
    clinic_a, clinic_b, django_capture_on_commit_callbacks
):
    """Nothing in the admin's response or the email says the address has a Settle account elsewhere."""
    elsewhere = clinic_b.user("billing_manager").email
    stranger = _normalised_invite_response(clinic_a, django_capture_on_commit_callbacks, "stranger@example.net")
    mail.outbox.clear()
    with tenant_scope(clinic_a.tenant):
        StaffInvitation.objects.all().delete()
    known = _normalised_invite_response(clinic_a, django_capture_on_commit_callbacks, elsewhere)
    assert known == stranger


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"email": "not-an-email", "role": "front_desk"}, "Enter a valid email address."),
        ({"email": "a" * 250 + "@example.com", "role": "front_desk"}, "at most 254 characters"),
        ({"email": NEW_EMAIL, "role": "patient"}, "Select a valid choice."),
        ({"email": NEW_EMAIL, "role": "superuser"}, "Select a valid choice."),
        ({"email": NEW_EMAIL, "role": "x" * 10_000}, "Select a valid choice."),
        ({"email": NEW_EMAIL}, "This field is required."),
        ({"role": "front_desk"}, "This field is required."),
        ({"email": ["a@example.com", "b@example.com"], "role": "front_desk"}, None),
    ],
    ids=["malformed", "oversized", "patient", "unknown-role", "oversized-role", "no-role", "no-email", "repeated"],
)
def test_bad_invite_input_is_400_and_changes_nothing(clinic_a, django_capture_on_commit_callbacks, data, error):
    with django_capture_on_commit_callbacks(execute=True):
        response = clinic_a.client_as(ADMIN).post(reverse("team:invite"), data)
    if error is None:
        assert response.status_code in (302, 400)
        return
    assert response.status_code == 400
    assert error in response.content.decode()
    with tenant_scope(clinic_a.tenant):
        assert not StaffInvitation.objects.exists()
    assert mail.outbox == [] and events("staff.invited") == []


def test_the_service_refuses_a_patient_role(clinic_a):
    with tenant_scope(clinic_a.tenant), pytest.raises(InvitationError, match="staff roles"):
        invitation_create(
            tenant=clinic_a.tenant, actor=clinic_a.user(ADMIN), actor_role=ADMIN, email=NEW_EMAIL, role=Role.PATIENT
        )


@pytest.mark.parametrize("role", NON_ADMIN_ROLES)
def test_only_clinic_admins_may_invite_or_revoke(clinic_a, django_capture_on_commit_callbacks, role):
    invited(clinic_a, django_capture_on_commit_callbacks)
    invitation = invitation_of(clinic_a)
    client = clinic_a.client_as(role)
    assert client.get(reverse("team:list")).status_code == 403
    assert client.post(reverse("team:invite"), {"email": "x@example.com", "role": "clinic_admin"}).status_code == 403
    revoke = reverse("team:invitation-revoke", kwargs={"invitation_id": invitation.public_id})
    assert client.post(revoke).status_code == 403
    invitation.refresh_from_db()
    assert invitation.is_pending
    assert len(events("staff.invited")) == 1


# --------------------------------------------------------------------------------------
# Revoking
# --------------------------------------------------------------------------------------


def test_revoking_kills_the_link_and_is_audited_once(clinic_a, django_capture_on_commit_callbacks):
    path = invited(clinic_a, django_capture_on_commit_callbacks)
    invitation = invitation_of(clinic_a)
    url = reverse("team:invitation-revoke", kwargs={"invitation_id": invitation.public_id})
    admin = clinic_a.client_as(ADMIN)

    response = admin.post(url)
    assert response.status_code == 302
    invitation.refresh_from_db()
    assert invitation.revoked_at is not None
    [event] = events("staff.invitation_revoked")
    assert (event.target_type, event.target_id, event.details) == (
        "invitation",
        str(invitation.public_id),
        {"role": "billing_manager"},
    )

    page = clinic_a.client().get(path)
    assert page.status_code == 404
    assert "This invitation link is not valid" in page.content.decode()

    again = admin.post(url)
    assert again.status_code == 400
    assert "no longer pending" in again.content.decode()
    assert len(events("staff.invitation_revoked")) == 1


def test_another_clinics_invitation_cannot_be_revoked_here(clinic_a, clinic_b, django_capture_on_commit_callbacks):
    invited(clinic_b, django_capture_on_commit_callbacks)
    theirs = invitation_of(clinic_b)
    url = reverse("team:invitation-revoke", kwargs={"invitation_id": theirs.public_id})
    assert clinic_a.client_as(ADMIN).post(url).status_code == 404
    theirs.refresh_from_db()
    assert theirs.is_pending and events("staff.invitation_revoked") == []


def test_revoke_is_post_only(clinic_a, django_capture_on_commit_callbacks):
    invited(clinic_a, django_capture_on_commit_callbacks)
    url = reverse("team:invitation-revoke", kwargs={"invitation_id": invitation_of(clinic_a).public_id})
    assert clinic_a.client_as(ADMIN).get(url).status_code == 405


# --------------------------------------------------------------------------------------
# Accepting: a new account
# --------------------------------------------------------------------------------------


def test_accepting_creates_the_account_signs_in_and_goes_to_authenticator_setup(
    clinic_a, django_capture_on_commit_callbacks
):
    path = invited(clinic_a, django_capture_on_commit_callbacks)
    token = path.rstrip("/").rsplit("/", 1)[1]
    browser = clinic_a.client()

    page = open_link(browser, path)
    html = page.content.decode()
    assert page.status_code == 200
    assert "Choose your password" in html and "already has a Settle account" not in html
    assert "billing manager" in html and NEW_EMAIL in html
    assert token not in html, "the form page does not carry the live token"
    assert page["Cache-Control"].startswith("max-age=0")

    response = browser.post(ACCEPT_PAGE, new_account_data())
    assert response.status_code == 302
    assert response["Location"] == reverse("staff:mfa-enrol")

    user = User.objects.get(email=NEW_EMAIL)
    assert user.full_name == "Nadia Hire" and user.check_password(GOOD_PASSWORD)
    membership = membership_of(clinic_a, user)
    assert membership is not None and membership.role == Role.BILLING_MANAGER and membership.is_active
    invitation = invitation_of(clinic_a)
    assert invitation.accepted_by == user and invitation.accepted_at is not None
    assert str(browser.session["_auth_user_id"]) == str(user.pk)

    [event] = events("staff.invitation_accepted")
    assert event.actor_user_id == user.public_id and event.actor_role == "billing_manager"
    assert event.target_id == str(invitation.public_id)
    assert event.details == {"role": "billing_manager", "membership": str(membership.public_id), "new_account": True}

    enrol = browser.get(response["Location"])
    assert enrol.status_code == 200 and 'id="totp-secret"' in enrol.content.decode()
    # Not verified yet: staff pages send the new member to the second factor first.
    assert browser.get(reverse("staff:dashboard")).status_code == 302


def test_a_used_link_says_so(clinic_a, django_capture_on_commit_callbacks):
    path = invited(clinic_a, django_capture_on_commit_callbacks)
    browser = clinic_a.client()
    open_link(browser, path)
    assert browser.post(ACCEPT_PAGE, new_account_data()).status_code == 302

    again = clinic_a.client().get(path)
    assert again.status_code == 410
    assert "This invitation has already been used" in again.content.decode()
    assert len(events("staff.invitation_accepted")) == 1


def test_an_expired_link_says_so(clinic_a, django_capture_on_commit_callbacks):
    path = invited(clinic_a, django_capture_on_commit_callbacks)
    with time_machine.travel(timezone.now() + INVITATION_LIFETIME + timedelta(minutes=1)):
        response = clinic_a.client().get(path)
    assert response.status_code == 410
    assert "This invitation has expired" in response.content.decode()
    assert "ask your clinic admin to send a new one" in response.content.decode()


def test_a_link_that_expires_while_the_form_is_open_is_refused(clinic_a, django_capture_on_commit_callbacks):
    path = invited(clinic_a, django_capture_on_commit_callbacks)
    browser = clinic_a.client()
    open_link(browser, path)
    with tenant_scope(clinic_a.tenant):
        StaffInvitation.objects.update(expires_at=timezone.now() + timedelta(minutes=1))
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        response = browser.post(ACCEPT_PAGE, new_account_data())
    assert response.status_code == 410
    assert "This invitation has expired" in response.content.decode()
    assert not User.objects.filter(email=NEW_EMAIL).exists()


def test_a_link_is_not_valid_on_another_clinics_host(clinic_a, clinic_b, django_capture_on_commit_callbacks):
    path = invited(clinic_a, django_capture_on_commit_callbacks)
    on_beta = clinic_b.client()
    for response in (on_beta.get(path), on_beta.post(path, new_account_data())):
        assert response.status_code == 404
        assert "This invitation link is not valid" in response.content.decode()
    assert on_beta.get(ACCEPT_PAGE).status_code == 404, "nothing was put in the session"
    assert not User.objects.filter(email=NEW_EMAIL).exists()
    assert open_link(clinic_a.client(), path).status_code == 200, "still valid at its own clinic"


def test_the_session_of_one_clinic_does_not_carry_an_invitation_to_another(
    clinic_a, clinic_b, django_capture_on_commit_callbacks
):
    """Even a session that somehow holds alpha's invitation finds nothing on beta's host."""
    path = invited(clinic_a, django_capture_on_commit_callbacks)
    alpha = clinic_a.client()
    open_link(alpha, path)
    beta = clinic_b.client()
    session = beta.session
    session.update(dict(alpha.session.items()))
    session.save()
    assert beta.get(ACCEPT_PAGE).status_code == 404


@pytest.mark.parametrize(
    "token",
    ["short", "x" * 43 + "y", "A" * 43, "x" * 5000, "%3Cscript%3Ealert(1)%3C%2Fscript%3E", "..", "%00" * 10],
    ids=["short", "long", "unknown", "huge", "markup", "dots", "nul"],
)
def test_malformed_or_unknown_tokens_are_not_valid(clinic_a, django_capture_on_commit_callbacks, token):
    invited(clinic_a, django_capture_on_commit_callbacks)
    response = clinic_a.client().get(f"/staff/team/invitations/{token}/")
    assert response.status_code == 404
    if response.get("Content-Type", "").startswith("text/html") and b"invitation" in response.content:
        assert "<script>" not in response.content.decode()


def test_the_accept_page_without_a_link_is_not_valid(clinic_a):
    response = clinic_a.client().get(ACCEPT_PAGE)
    assert response.status_code == 404
    assert "This invitation link is not valid" in response.content.decode()


def test_the_accept_page_is_not_served_on_the_platform_host(clinic_a, django_capture_on_commit_callbacks):
    from tests.conftest import platform_client

    path = invited(clinic_a, django_capture_on_commit_callbacks)
    assert platform_client().get(path).status_code == 404


@pytest.mark.parametrize(
    ("overrides", "field_error"),
    [
        ({"password": "short1", "password_confirm": "short1"}, "at least 12 characters"),
        (
            {"password": "onlyletterspassword", "password_confirm": "onlyletterspassword"},
            "letter and at least one digit",
        ),
        ({"password": "password12345", "password_confirm": "password12345"}, "common or breached"),
        ({"password_confirm": GOOD_PASSWORD + "x"}, "The two passwords are not the same."),
        ({"full_name": "   "}, "This field is required."),
        ({"full_name": "n" * 151}, "at most 150 characters"),
        ({"password": "p4" * 200, "password_confirm": "p4" * 200}, "at most 256 characters"),
        ({"password": ""}, "This field is required."),
    ],
    ids=["short", "no-digits", "breached", "mismatch", "blank-name", "long-name", "long-password", "no-password"],
)
def test_bad_new_account_input_is_400_and_creates_nothing(
    clinic_a, django_capture_on_commit_callbacks, overrides, field_error
):
    path = invited(clinic_a, django_capture_on_commit_callbacks)
    browser = clinic_a.client()
    open_link(browser, path)
    response = browser.post(ACCEPT_PAGE, new_account_data(**overrides))
    assert response.status_code == 400
    assert field_error in response.content.decode()
    assert not User.objects.filter(email=NEW_EMAIL).exists()
    assert invitation_of(clinic_a).is_pending
    assert events("staff.invitation_accepted") == []
    # The same session can then accept with good input.
    assert browser.post(ACCEPT_PAGE, new_account_data()).status_code == 302


def test_the_password_must_not_resemble_the_email(clinic_a, django_capture_on_commit_callbacks):
    path = invited(clinic_a, django_capture_on_commit_callbacks, email="harbourmaster2024@example.org")
    browser = clinic_a.client()
    open_link(browser, path)
    similar = "harbourmaster2024"
    response = browser.post(ACCEPT_PAGE, new_account_data(password=similar, password_confirm=similar))
    assert response.status_code == 400
    assert not User.objects.filter(email="harbourmaster2024@example.org").exists()


# --------------------------------------------------------------------------------------
# Accepting: an existing account (one account per person)
# --------------------------------------------------------------------------------------


def test_someone_with_an_account_elsewhere_joins_with_their_existing_password(
    clinic_a, clinic_b, django_capture_on_commit_callbacks
):
    person = clinic_b.user("billing_manager")
    totp_device(person)  # already set up at beta
    path = invited(clinic_a, django_capture_on_commit_callbacks, email=person.email, role=Role.FRONT_DESK)
    browser = clinic_a.client()

    page = open_link(browser, path).content.decode()
    assert "already has a Settle account" in page
    assert 'name="full_name"' not in page and 'name="password_confirm"' not in page

    wrong = browser.post(ACCEPT_PAGE, {"password": "not-their-password-1"})
    assert wrong.status_code == 400
    assert "does not match your existing Settle account" in wrong.content.decode()
    assert membership_of(clinic_a, person) is None
    assert len(events("auth.login_failed")) == 1, "a wrong password is a failed sign-in"

    response = browser.post(ACCEPT_PAGE, {"password": PERSONA_PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("staff:mfa"), "they already have an authenticator"
    person.refresh_from_db()
    assert person.check_password(PERSONA_PASSWORD) and User.objects.filter(email=person.email).count() == 1
    joined = membership_of(clinic_a, person)
    assert joined is not None and joined.role == Role.FRONT_DESK and joined.is_active
    beta = membership_of(clinic_b, person)
    assert beta is not None and beta.role == Role.BILLING_MANAGER, "their other clinic is untouched"
    [event] = events("staff.invitation_accepted")
    assert event.details["new_account"] is False


def test_an_account_without_an_authenticator_goes_to_setup(clinic_a, outsider, django_capture_on_commit_callbacks):
    path = invited(clinic_a, django_capture_on_commit_callbacks, email=outsider.email)
    browser = clinic_a.client()
    open_link(browser, path)
    response = browser.post(ACCEPT_PAGE, {"password": PERSONA_PASSWORD})
    assert response["Location"] == reverse("staff:mfa-enrol")


def test_wrong_existing_passwords_count_toward_lockout(clinic_a, clinic_b, django_capture_on_commit_callbacks):
    person = clinic_b.user("front_desk")
    path = invited(clinic_a, django_capture_on_commit_callbacks, email=person.email)
    browser = clinic_a.client()
    open_link(browser, path)
    statuses = [browser.post(ACCEPT_PAGE, {"password": f"wrong-password-{n}"}).status_code for n in range(10)]
    assert statuses[:9] == [400] * 9
    assert account_lockouts(emails=[person.email]), "ten failures lock the account"
    locked = browser.post(ACCEPT_PAGE, {"password": PERSONA_PASSWORD})
    assert locked.status_code == 429
    assert "Signing in is locked" in locked.content.decode()
    assert membership_of(clinic_a, person) is None


def test_a_deactivated_member_invited_again_is_reactivated_in_the_new_role(
    clinic_a, django_capture_on_commit_callbacks
):
    person = clinic_a.user("front_desk")
    with tenant_scope(clinic_a.tenant):
        Membership.objects.filter(tenant=clinic_a.tenant, user=person).update(is_active=False)
    path = invited(clinic_a, django_capture_on_commit_callbacks, email=person.email, role=Role.COMPLIANCE_OFFICER)
    browser = clinic_a.client()
    open_link(browser, path)
    assert browser.post(ACCEPT_PAGE, {"password": PERSONA_PASSWORD}).status_code == 302
    membership = membership_of(clinic_a, person)
    assert membership is not None and membership.is_active and membership.role == Role.COMPLIANCE_OFFICER
    with tenant_scope(clinic_a.tenant):
        assert Membership.objects.filter(tenant=clinic_a.tenant, user=person).count() == 1


def test_someone_who_became_a_member_meanwhile_is_told_to_sign_in(
    clinic_a, outsider, django_capture_on_commit_callbacks
):
    path = invited(clinic_a, django_capture_on_commit_callbacks, email=outsider.email)
    MembershipFactory.create(tenant=clinic_a.tenant, user=outsider, role=Role.FRONT_DESK)
    browser = clinic_a.client()
    open_link(browser, path)
    response = browser.post(ACCEPT_PAGE, {"password": PERSONA_PASSWORD})
    assert response.status_code == 400
    assert "already on this clinic&#x27;s staff" in response.content.decode()
    assert invitation_of(clinic_a, outsider.email).is_pending


def test_the_invitee_page_never_reveals_an_account_without_a_valid_token(
    clinic_a, clinic_b, django_capture_on_commit_callbacks
):
    """Invalid, expired and used links answer the same for an email with an account and one without."""
    person = clinic_b.user("front_desk")
    known = invited(clinic_a, django_capture_on_commit_callbacks, email=person.email)
    unknown = invited(clinic_a, django_capture_on_commit_callbacks, email="nobody@example.net")
    with tenant_scope(clinic_a.tenant):
        StaffInvitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    known_page = clinic_a.client().get(known)
    unknown_page = clinic_a.client().get(unknown)
    assert known_page.status_code == unknown_page.status_code == 410
    strip = re.compile(r"csrfmiddlewaretoken\" value=\"[^\"]+\"")
    assert strip.sub("", known_page.content.decode()) == strip.sub("", unknown_page.content.decode())


# --------------------------------------------------------------------------------------
# Single use under concurrency (PostgreSQL row locks)
# --------------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_accepts_cannot_both_succeed(clinic_a, outsider):
    with tenant_scope(clinic_a.tenant):
        invitation = invitation_create(
            tenant=clinic_a.tenant,
            actor=clinic_a.user(ADMIN),
            actor_role=ADMIN,
            email=outsider.email,
            role=Role.FRONT_DESK,
        )
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def accept() -> None:
        try:
            request = RequestFactory().post("/", REMOTE_ADDR="198.51.100.20")
            request.tenant = clinic_a.tenant  # type: ignore[attr-defined]
            with tenant_scope(clinic_a.tenant):
                mine = StaffInvitation.objects.get(pk=invitation.pk)
                barrier.wait(timeout=10)
                invitation_accept(request=request, tenant=clinic_a.tenant, invitation=mine, password=PERSONA_PASSWORD)
            outcomes.append("accepted")
        except InvitationError as error:
            outcomes.append(f"refused: {error}")
        finally:
            connection.close()

    threads = [threading.Thread(target=accept) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes)[0] == "accepted" and len(outcomes) == 2, outcomes
    assert outcomes.count("accepted") == 1, outcomes
    with tenant_scope(clinic_a.tenant):
        assert Membership.objects.filter(tenant=clinic_a.tenant, user=outsider).count() == 1
    assert AuditEvent.objects.filter(action="staff.invitation_accepted").count() == 1


def test_invitation_for_token_is_tenant_bound_and_pending_only(clinic_a, clinic_b):
    with tenant_scope(clinic_a.tenant):
        invitation_create(
            tenant=clinic_a.tenant, actor=clinic_a.user(ADMIN), actor_role=ADMIN, email=NEW_EMAIL, role="front_desk"
        )
    [message] = mail.outbox if mail.outbox else [None]
    assert message is None, "the email is sent only once the transaction commits"
    invitation = invitation_of(clinic_a)
    # The token is not recoverable from the row; a known one is planted for the look-up.
    token = "T" * 43
    with tenant_scope(clinic_a.tenant):
        StaffInvitation.objects.filter(pk=invitation.pk).update(token_hash=hashlib.sha256(token.encode()).hexdigest())
        assert invitation_for_token(tenant=clinic_a.tenant, token=token) == invitation
    with tenant_scope(clinic_b.tenant):
        assert invitation_for_token(tenant=clinic_b.tenant, token=token) is None
    with tenant_scope(clinic_a.tenant):
        StaffInvitation.objects.filter(pk=invitation.pk).update(revoked_at=timezone.now())
        assert invitation_for_token(tenant=clinic_a.tenant, token=token) is None


def test_no_totp_device_is_created_before_enrolment(clinic_a, django_capture_on_commit_callbacks):
    path = invited(clinic_a, django_capture_on_commit_callbacks)
    browser = clinic_a.client()
    open_link(browser, path)
    browser.post(ACCEPT_PAGE, new_account_data())
    assert not TOTPDevice.objects.filter(user__email=NEW_EMAIL, confirmed=True).exists()


def test_the_link_uses_the_team_accept_route(clinic_a, django_capture_on_commit_callbacks):
    path = invited(clinic_a, django_capture_on_commit_callbacks)
    assert urlsplit(path).path.startswith("/staff/team/invitations/")
