"""Staff management by clinic admins: roles, deactivation, MFA reset, unlock; all audited.

Alpha's clinic admin acts on alpha's staff (tests/conftest.py personas);
beta's memberships must be 404 from alpha's host. Most tests go through the
HTTP views; the last-admin rule is also pinned on the services, where an
actor without a membership (a break-glass operator) can reach it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEvent
from portal.tenancy.context import tenant_scope
from security.login_lockout import account_lockouts
from security.models import BreakGlassGrant, Membership, Role, User, UserSession
from security.team import (
    TeamError,
    member_deactivate,
    member_role_change,
    team_members,
    team_summary,
)
from tests.conftest import Clinic, login_verified, sign_in
from tests.factories import PERSONA_PASSWORD, MembershipFactory, UserFactory, totp_device

pytestmark = pytest.mark.django_db

ADMIN = Role.CLINIC_ADMIN.value
FRONT_DESK = Role.FRONT_DESK.value
NON_ADMIN_ROLES = [r for r in Role.values if r not in (Role.CLINIC_ADMIN, Role.PATIENT)]
MEMBER_ACTIONS = ["member-role", "member-deactivate", "member-reactivate", "member-mfa-reset", "member-unlock"]


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def membership(clinic: Clinic, role_or_user: str | User) -> Membership:
    user = clinic.user(role_or_user) if isinstance(role_or_user, str) else role_or_user
    with tenant_scope(clinic.tenant):
        return Membership.objects.select_related("user").get(tenant=clinic.tenant, user=user)


def url(name: str, target: Membership) -> str:
    return reverse(f"team:{name}", kwargs={"membership_id": target.public_id})


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("sequence"))


def staff_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action__startswith="staff.").order_by("sequence"))


def second_admin(clinic: Clinic) -> User:
    user = UserFactory.create(email="second.admin@alpha.example", full_name="Second Admin")
    MembershipFactory.create(tenant=clinic.tenant, user=user, role=Role.CLINIC_ADMIN)
    return user


def lock_out(clinic: Clinic, email: str) -> None:
    """Ten wrong passwords at the sign-in page: the account (and this address) are locked."""
    browser = clinic.client()
    for n in range(10):
        browser.post(reverse("staff:login"), {"username": email, "password": f"wrong-password-{n}"})
    assert account_lockouts(emails=[email]), "ten failures lock the account"


def break_glass_client(clinic: Clinic):
    operator = UserFactory.create(email="responder@platform.example", is_platform_operator=True, is_staff=True)
    with tenant_scope(clinic.tenant):
        BreakGlassGrant.objects.create(
            tenant=clinic.tenant,
            operator=operator,
            reason="Restore the clinic's only admin.",
            expires_at=timezone.now() + timedelta(minutes=30),
        )
    return clinic.client(operator), operator


# --------------------------------------------------------------------------------------
# The team page
# --------------------------------------------------------------------------------------


def test_the_team_page_lists_members_with_role_status_mfa_and_lockout(clinic_a, clinic_b):
    totp_device(clinic_a.user("billing_manager"))
    lock_out(clinic_a, clinic_a.user(FRONT_DESK).email)
    response = clinic_a.client_as(ADMIN).get(reverse("team:list"))
    assert response.status_code == 200
    page = response.content.decode()
    for role in NON_ADMIN_ROLES + [ADMIN]:
        user = clinic_a.user(role)
        assert user.email in page and user.full_name in page
        assert url("member", membership(clinic_a, role)) in page
    assert clinic_a.user(Role.PATIENT).email not in page, "patients are not staff"
    assert clinic_b.user(ADMIN).email not in page, "nothing of another clinic"
    assert "Not set up" in page and "Set up" in page
    assert "Locked until" in page
    assert 'action="/staff/team/invite/"' in page and 'name="email"' in page and 'maxlength="254"' in page

    members = {m.user.email: m for m in team_members_of(clinic_a)}
    assert members[clinic_a.user(FRONT_DESK).email].is_locked
    assert members[clinic_a.user("billing_manager").email].mfa_enrolled
    assert not members[clinic_a.user("compliance_officer").email].is_locked


def team_members_of(clinic: Clinic):
    with tenant_scope(clinic.tenant):
        return team_members(tenant=clinic.tenant)


def test_the_team_page_query_count_does_not_grow_with_the_team(clinic_a):
    client = clinic_a.client_as(ADMIN)
    client.get(reverse("team:list"))  # warm up (session, content types)
    with CaptureQueriesContext(connection) as small:
        client.get(reverse("team:list"))
    for n in range(6):
        user = UserFactory.create(email=f"extra{n}@alpha.example")
        MembershipFactory.create(tenant=clinic_a.tenant, user=user, role=Role.FRONT_DESK)
        totp_device(user)
    with CaptureQueriesContext(connection) as large:
        response = client.get(reverse("team:list"))
    assert "extra5@alpha.example" in response.content.decode()
    assert len(large.captured_queries) == len(small.captured_queries)


def test_team_summary_counts_active_staff_and_locks(clinic_a):
    lock_out(clinic_a, clinic_a.user(FRONT_DESK).email)
    with tenant_scope(clinic_a.tenant):
        summary = team_summary(tenant=clinic_a.tenant)
    assert summary == {"active_staff": 4, "pending_invitations": 0, "locked_accounts": 1}


@pytest.mark.parametrize("role", NON_ADMIN_ROLES)
def test_other_roles_get_403_on_every_team_page(clinic_a, role):
    client = clinic_a.client_as(role)
    target = membership(clinic_a, FRONT_DESK if role != FRONT_DESK else "billing_manager")
    assert client.get(reverse("team:list")).status_code == 403
    assert client.get(url("member", target)).status_code == 403
    for action in MEMBER_ACTIONS:
        assert client.post(url(action, target), {"role": ADMIN}).status_code == 403, action
    target.refresh_from_db()
    assert target.is_active and target.role != ADMIN
    assert staff_events() == []


def test_anonymous_and_outsiders_are_kept_out(clinic_a, outsider):
    assert clinic_a.client().get(reverse("team:list")).status_code == 302
    assert clinic_a.client(outsider).get(reverse("team:list")).status_code == 403


# --------------------------------------------------------------------------------------
# Object look-ups: another clinic's, a patient's, an unknown id
# --------------------------------------------------------------------------------------


def test_another_clinics_membership_is_404_for_every_member_url(clinic_a, clinic_b):
    theirs = membership(clinic_b, FRONT_DESK)
    lock_out(clinic_b, clinic_b.user(FRONT_DESK).email)
    admin = clinic_a.client_as(ADMIN)
    assert admin.get(url("member", theirs)).status_code == 404
    for action in MEMBER_ACTIONS:
        assert admin.post(url(action, theirs), {"role": "billing_manager"}).status_code == 404, action
    theirs.refresh_from_db()
    assert theirs.is_active and theirs.role == FRONT_DESK
    assert account_lockouts(emails=[theirs.user.email]), "their lockout is untouched"
    assert staff_events() == []


def test_a_patient_membership_and_unknown_ids_are_404(clinic_a):
    admin = clinic_a.client_as(ADMIN)
    assert admin.get(url("member", membership(clinic_a, Role.PATIENT))).status_code == 404
    unknown = "/staff/team/members/00000000-0000-0000-0000-000000000000/"
    assert admin.get(unknown).status_code == 404
    assert admin.get("/staff/team/members/not-a-uuid/").status_code == 404
    assert admin.post(unknown + "deactivate/").status_code == 404


def test_the_member_page_shows_details_and_actions(clinic_a):
    target = membership(clinic_a, FRONT_DESK)
    response = clinic_a.client_as(ADMIN).get(url("member", target))
    page = response.content.decode()
    assert response.status_code == 200
    assert target.user.email in page and "Front desk" in page
    for action in ("member-role", "member-deactivate", "member-mfa-reset"):
        assert url(action, target) in page
    assert url("member-unlock", target) not in page, "offered only while locked"


def test_the_admins_own_page_offers_no_actions_on_themselves(clinic_a):
    own = membership(clinic_a, ADMIN)
    page = clinic_a.client_as(ADMIN).get(url("member", own)).content.decode()
    assert "This is you" in page
    assert url("member-deactivate", own) not in page and url("member-role", own) not in page


@pytest.mark.parametrize("action", MEMBER_ACTIONS + ["member"])
def test_member_urls_accept_only_their_method(clinic_a, action):
    target = membership(clinic_a, FRONT_DESK)
    admin = clinic_a.client_as(ADMIN)
    if action == "member":
        assert admin.post(url(action, target)).status_code == 405
    else:
        assert admin.get(url(action, target)).status_code == 405


# --------------------------------------------------------------------------------------
# Role changes
# --------------------------------------------------------------------------------------


def test_admin_changes_a_role_with_one_audit_event(clinic_a):
    target = membership(clinic_a, FRONT_DESK)
    response = clinic_a.client_as(ADMIN).post(url("member-role", target), {"role": "billing_manager"})
    assert response.status_code == 302 and response["Location"] == url("member", target)
    target.refresh_from_db()
    assert target.role == Role.BILLING_MANAGER
    [event] = staff_events()
    assert event.action == "staff.role_changed"
    assert (event.target_type, event.target_id) == ("membership", str(target.public_id))
    assert event.actor_user_id == clinic_a.user(ADMIN).public_id and event.actor_role == ADMIN
    assert event.details == {"role": "billing_manager", "from_role": "front_desk", "to_role": "billing_manager"}


def test_the_new_role_takes_effect_on_the_next_request(clinic_a):
    front_desk = clinic_a.client_as(FRONT_DESK)
    assert front_desk.get(reverse("team:list")).status_code == 403
    clinic_a.client_as(ADMIN).post(url("member-role", membership(clinic_a, FRONT_DESK)), {"role": ADMIN})
    assert front_desk.get(reverse("team:list")).status_code == 200


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"role": "patient"}, "Select a valid choice."),
        ({"role": "superuser"}, "Select a valid choice."),
        ({"role": "x" * 100_000}, "Select a valid choice."),
        ({}, "This field is required."),
        ({"role": "front_desk"}, "already a front desk"),
    ],
    ids=["patient", "unknown", "oversized", "missing", "unchanged"],
)
def test_bad_role_input_is_400_and_changes_nothing(clinic_a, data, message):
    target = membership(clinic_a, FRONT_DESK)
    response = clinic_a.client_as(ADMIN).post(url("member-role", target), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    target.refresh_from_db()
    assert target.role == FRONT_DESK
    assert staff_events() == []


def test_an_admin_cannot_change_their_own_role(clinic_a):
    second_admin(clinic_a)
    own = membership(clinic_a, ADMIN)
    response = clinic_a.client_as(ADMIN).post(url("member-role", own), {"role": "front_desk"})
    assert response.status_code == 400
    assert "You can&#x27;t change your own role" in response.content.decode()
    own.refresh_from_db()
    assert own.role == ADMIN and staff_events() == []


def test_one_admin_may_demote_another_while_one_remains(clinic_a):
    other = membership(clinic_a, second_admin(clinic_a))
    response = clinic_a.client_as(ADMIN).post(url("member-role", other), {"role": "compliance_officer"})
    assert response.status_code == 302
    other.refresh_from_db()
    assert other.role == Role.COMPLIANCE_OFFICER


def test_the_last_admin_cannot_be_demoted_or_deactivated_even_in_an_emergency(clinic_a):
    """A break-glass operator holds staff.manage but has no membership: only the last-admin rule stops them."""
    client, _ = break_glass_client(clinic_a)
    only_admin = membership(clinic_a, ADMIN)
    for action, data in (("member-role", {"role": "front_desk"}), ("member-deactivate", {})):
        response = client.post(url(action, only_admin), data)
        assert response.status_code == 400, action
        assert "at least one active clinic admin" in response.content.decode()
    only_admin.refresh_from_db()
    assert only_admin.role == ADMIN and only_admin.is_active
    assert staff_events() == []


def test_a_break_glass_operator_acts_with_their_own_role_in_the_audit(clinic_a):
    client, operator = break_glass_client(clinic_a)
    target = membership(clinic_a, FRONT_DESK)
    assert client.post(url("member-deactivate", target)).status_code == 302
    [event] = staff_events()
    assert event.actor_user_id == operator.public_id and event.actor_role == "break_glass"


def test_last_admin_rule_on_the_services(clinic_a):
    actor = UserFactory.create(email="operator@platform.example", is_platform_operator=True)
    only_admin = membership(clinic_a, ADMIN)
    inactive = membership(clinic_a, second_admin(clinic_a))
    with tenant_scope(clinic_a.tenant):
        Membership.objects.filter(pk=inactive.pk).update(is_active=False)
        with pytest.raises(TeamError, match="at least one active clinic admin"):
            member_role_change(
                tenant=clinic_a.tenant, actor=actor, actor_role="break_glass", membership=only_admin, role="front_desk"
            )
        with pytest.raises(TeamError, match="at least one active clinic admin"):
            member_deactivate(tenant=clinic_a.tenant, actor=actor, actor_role="break_glass", membership=only_admin)
        # Promoting someone first makes it possible.
        member_role_change(
            tenant=clinic_a.tenant,
            actor=actor,
            actor_role="break_glass",
            membership=membership(clinic_a, FRONT_DESK),
            role=ADMIN,
        )
        member_deactivate(tenant=clinic_a.tenant, actor=actor, actor_role="break_glass", membership=only_admin)
    only_admin.refresh_from_db()
    assert not only_admin.is_active
    assert [e.action for e in staff_events()] == ["staff.role_changed", "staff.deactivated"]


def test_the_service_refuses_the_patient_role(clinic_a):
    with tenant_scope(clinic_a.tenant), pytest.raises(TeamError, match="staff roles"):
        member_role_change(
            tenant=clinic_a.tenant,
            actor=clinic_a.user(ADMIN),
            actor_role=ADMIN,
            membership=membership(clinic_a, FRONT_DESK),
            role=Role.PATIENT,
        )


# --------------------------------------------------------------------------------------
# Deactivation and reactivation
# --------------------------------------------------------------------------------------


def test_deactivation_ends_the_members_sessions_and_they_get_403_afterwards(clinic_a):
    member = clinic_a.user(FRONT_DESK)
    browser = clinic_a.client()
    assert sign_in(browser, member).status_code == 302
    assert browser.get(reverse("staff:dashboard")).status_code == 200
    target = membership(clinic_a, FRONT_DESK)

    response = clinic_a.client_as(ADMIN).post(url("member-deactivate", target))
    assert response.status_code == 302
    target.refresh_from_db()
    assert not target.is_active
    assert not UserSession.objects.filter(user=member).exists()
    assert browser.get(reverse("staff:dashboard")).status_code == 302, "their session is gone: back to sign-in"

    [event] = staff_events()
    assert event.action == "staff.deactivated"
    assert (event.target_type, event.target_id) == ("membership", str(target.public_id))
    assert event.details == {"role": "front_desk", "sessions_ended": 1}

    again = clinic_a.client()
    sign_in(again, member)  # the account still exists (it may belong to other clinics)
    assert again.get(reverse("staff:dashboard")).status_code == 403
    assert again.get(reverse("staff:payments")).status_code == 403


def test_the_team_page_shows_a_deactivated_member(clinic_a):
    target = membership(clinic_a, FRONT_DESK)
    clinic_a.client_as(ADMIN).post(url("member-deactivate", target))
    assert "Deactivated" in clinic_a.client_as(ADMIN).get(reverse("team:list")).content.decode()


def test_an_admin_cannot_deactivate_themselves(clinic_a):
    second_admin(clinic_a)
    own = membership(clinic_a, ADMIN)
    response = clinic_a.client_as(ADMIN).post(url("member-deactivate", own))
    assert response.status_code == 400
    assert "You can&#x27;t deactivate yourself" in response.content.decode()
    own.refresh_from_db()
    assert own.is_active and staff_events() == []


def test_deactivating_twice_is_refused(clinic_a):
    target = membership(clinic_a, FRONT_DESK)
    admin = clinic_a.client_as(ADMIN)
    admin.post(url("member-deactivate", target))
    response = admin.post(url("member-deactivate", target))
    assert response.status_code == 400 and "already deactivated" in response.content.decode()
    assert len(events("staff.deactivated")) == 1


def test_reactivation_restores_access_with_one_audit_event(clinic_a):
    target = membership(clinic_a, FRONT_DESK)
    admin = clinic_a.client_as(ADMIN)
    admin.post(url("member-deactivate", target))
    assert clinic_a.client_as(FRONT_DESK).get(reverse("staff:dashboard")).status_code == 403

    response = admin.post(url("member-reactivate", target))
    assert response.status_code == 302
    target.refresh_from_db()
    assert target.is_active and target.role == FRONT_DESK
    assert clinic_a.client_as(FRONT_DESK).get(reverse("staff:dashboard")).status_code == 200
    [event] = events("staff.reactivated")
    assert (event.target_type, event.target_id) == ("membership", str(target.public_id))

    again = admin.post(url("member-reactivate", target))
    assert again.status_code == 400 and "already active" in again.content.decode()
    assert len(events("staff.reactivated")) == 1


# --------------------------------------------------------------------------------------
# MFA reset
# --------------------------------------------------------------------------------------


def test_mfa_reset_removes_devices_ends_sessions_and_the_next_sign_in_enrols(clinic_a):
    member = clinic_a.user("billing_manager")
    browser = clinic_a.client()
    sign_in(browser, member)
    StaticDevice.objects.create(user=member, name="Recovery codes")
    assert TOTPDevice.objects.filter(user=member).exists()
    target = membership(clinic_a, "billing_manager")

    response = clinic_a.client_as(ADMIN).post(url("member-mfa-reset", target))
    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=member).exists()
    assert not StaticDevice.objects.filter(user=member).exists()
    assert not UserSession.objects.filter(user=member).exists()
    assert browser.get(reverse("staff:dashboard")).status_code == 302

    [event] = staff_events()
    assert event.action == "staff.mfa_reset"
    assert (event.target_type, event.target_id) == ("user", str(member.public_id))
    assert event.details == {"membership": str(target.public_id), "sessions_ended": 1}

    fresh = clinic_a.client()
    step = fresh.post(reverse("staff:login"), {"username": member.email, "password": PERSONA_PASSWORD})
    assert step.status_code == 302
    assert step["Location"].startswith(reverse("staff:mfa-enrol"))
    enrol = fresh.get(step["Location"])
    assert enrol.status_code == 200 and 'id="totp-secret"' in enrol.content.decode()
    # The membership itself is untouched.
    target.refresh_from_db()
    assert target.is_active and target.role == Role.BILLING_MANAGER


def test_an_admin_cannot_reset_their_own_authenticator(clinic_a):
    own = membership(clinic_a, ADMIN)
    response = clinic_a.client_as(ADMIN).post(url("member-mfa-reset", own))
    assert response.status_code == 400
    assert "You can&#x27;t reset your own authenticator" in response.content.decode()
    assert TOTPDevice.objects.filter(user=clinic_a.user(ADMIN)).exists()
    assert staff_events() == []


# --------------------------------------------------------------------------------------
# Unlock
# --------------------------------------------------------------------------------------


def test_unlock_clears_a_lockout_and_the_member_can_sign_in_again(clinic_a):
    member = clinic_a.user(FRONT_DESK)
    lock_out(clinic_a, member.email)
    browser = clinic_a.client()
    refused = browser.post(reverse("staff:login"), {"username": member.email, "password": PERSONA_PASSWORD})
    assert refused.status_code == 429, "locked: even the right password is refused"
    target = membership(clinic_a, FRONT_DESK)
    page = clinic_a.client_as(ADMIN).get(url("member", target)).content.decode()
    assert "Locked until" in page and url("member-unlock", target) in page

    response = clinic_a.client_as(ADMIN).post(url("member-unlock", target))
    assert response.status_code == 302
    assert account_lockouts(emails=[member.email]) == {}
    [event] = staff_events()
    assert event.action == "staff.unlocked"
    assert (event.target_type, event.target_id) == ("user", str(member.public_id))
    assert event.details["membership"] == str(target.public_id)

    assert sign_in(clinic_a.client(), member).status_code == 302, "from the same address too"


def test_unlocking_an_account_that_is_not_locked_is_refused(clinic_a):
    target = membership(clinic_a, FRONT_DESK)
    response = clinic_a.client_as(ADMIN).post(url("member-unlock", target))
    assert response.status_code == 400
    assert "This account is not locked." in response.content.decode()
    assert staff_events() == []


# --------------------------------------------------------------------------------------
# The audit trail: one event per act, no personal details
# --------------------------------------------------------------------------------------


def test_audit_details_carry_no_names_or_email_addresses(clinic_a):
    admin = clinic_a.client_as(ADMIN)
    target = membership(clinic_a, FRONT_DESK)
    lock_out(clinic_a, target.user.email)
    admin.post(url("member-role", target), {"role": "billing_manager"})
    admin.post(url("member-unlock", target))
    admin.post(url("member-mfa-reset", target))
    admin.post(url("member-deactivate", target))
    admin.post(url("member-reactivate", target))
    actions = [e.action for e in staff_events()]
    assert actions == [
        "staff.role_changed",
        "staff.unlocked",
        "staff.mfa_reset",
        "staff.deactivated",
        "staff.reactivated",
    ]
    for event in staff_events():
        flat = str(event.details)
        assert "@" not in flat and target.user.full_name not in flat, event.details


def test_a_member_signed_in_elsewhere_is_signed_out_by_deactivation_only_through_their_sessions(clinic_a, clinic_b):
    """Sessions belong to the account: deactivation at alpha ends the person's sessions, beta's membership stays."""
    person = clinic_b.user(FRONT_DESK)
    MembershipFactory.create(tenant=clinic_a.tenant, user=person, role=Role.FRONT_DESK)
    at_beta = clinic_b.client()
    login_verified(at_beta, person)
    clinic_a.client_as(ADMIN).post(url("member-deactivate", membership(clinic_a, person)))
    assert membership(clinic_b, person).is_active
    assert at_beta.get(reverse("staff:dashboard")).status_code == 302
    relogged = clinic_b.client(person)
    assert relogged.get(reverse("staff:dashboard")).status_code == 200, "still staff at beta"
