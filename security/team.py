"""A clinic's staff: members, roles, deactivation, MFA reset, unlock.

Services for clinic admins (permission staff.manage, checked by the views;
the services themselves hold only the business rules). Invitations live in
security.invitations. Rules every change obeys:

- An admin cannot change their own role or deactivate or MFA-reset
  themselves: a hijacked session must not be able to lock its owner out or
  swap the account's authenticator.
- The clinic always keeps at least one active clinic admin. The check locks
  the clinic's active admin memberships (in primary-key order) before
  changing anything, so two admins demoting each other at the same moment
  cannot both succeed.
- Each change writes exactly one audit event in the same durable
  transaction. Targets are public ids; details hold role names and counts,
  never names or email addresses.

Accounts are per person, not per clinic (one account per person), so an MFA
reset, an unlock and the sessions ended by a deactivation apply to the
person's account everywhere; their memberships at other clinics are untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from django.core.paginator import Page, Paginator
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.utils import timezone

from audit.recorder import audit_record
from portal.models import Tenant
from security.login_lockout import account_lockouts, login_failures_clear, normalize_username
from security.mfa import mfa_devices_remove, mfa_enrolled_user_ids
from security.models import Membership, Role, StaffInvitation, User
from security.roles import role_phrase
from security.sessions import user_sessions_end_all

# Roles a clinic admin may give: every role but patient.
STAFF_ROLES: tuple[str, ...] = tuple(role for role in Role.values if role != Role.PATIENT)


class TeamError(Exception):
    """A change to the clinic's staff that the rules refuse; the message is for the admin."""


def staff_role_choices() -> list[tuple[str, str]]:
    """(value, label) of the roles a clinic admin may give, for forms."""
    return [(role, str(Role(role).label)) for role in STAFF_ROLES]


def team_summary(*, tenant: Tenant) -> dict[str, Any]:
    """Counts for the dashboard: active staff, pending invitations, locked accounts."""
    staff = Membership.objects.filter(tenant=tenant, is_active=True).exclude(role=Role.PATIENT)
    emails = list(staff.values_list("user__email", flat=True))
    return {
        "active_staff": len(emails),
        "pending_invitations": StaffInvitation.objects.filter(
            tenant=tenant, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
        ).count(),
        "locked_accounts": len(account_lockouts(emails=emails)),
    }


# --- Reads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeamMember:
    """One staff membership with the state of its person's account."""

    membership: Membership
    mfa_enrolled: bool
    # Set while the account is locked out of signing in (security.login_lockout).
    locked_until: datetime | None

    @property
    def user(self) -> User:
        return self.membership.user

    @property
    def is_locked(self) -> bool:
        return self.locked_until is not None


def _staff_memberships(tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).exclude(role=Role.PATIENT).select_related("user")


def _with_account_state(memberships: list[Membership]) -> list[TeamMember]:
    """Adds MFA and lockout state: two queries whatever the number of members."""
    enrolled = mfa_enrolled_user_ids([m.user_id for m in memberships])
    locks = account_lockouts(emails=[m.user.email for m in memberships])
    members = []
    for membership in memberships:
        lock = locks.get(normalize_username(membership.user.email) or "")
        members.append(
            TeamMember(
                membership=membership,
                mfa_enrolled=membership.user_id in enrolled,
                locked_until=lock.locked_until if lock is not None else None,
            )
        )
    return members


def team_members(*, tenant: Tenant) -> list[TeamMember]:
    """The clinic's staff (active first, then by email) with MFA and lockout state. Three queries."""
    memberships = list(_staff_memberships(tenant).order_by("-is_active", "user__email"))
    return _with_account_state(memberships)


TEAM_PAGE_SIZE = 50


def team_members_page(*, tenant: Tenant, number: Any, per_page: int = TEAM_PAGE_SIZE) -> Page[TeamMember]:
    """One page of the clinic's staff, in team_members' order; account state only for that page's rows."""
    memberships = Paginator(_staff_memberships(tenant).order_by("-is_active", "user__email", "pk"), per_page)
    page = memberships.get_page(number)
    members = _with_account_state(list(page.object_list))
    return Page(members, page.number, cast("Paginator[TeamMember]", memberships))


def team_member(*, membership: Membership) -> TeamMember:
    """One member with MFA and lockout state, for the member page."""
    return _with_account_state([membership])[0]


def access_membership_by_uuid(*, tenant: Tenant, uuid: UUID) -> Membership:
    """A staff membership of `tenant` by public id, for staff.manage views.

    Http404 for an unknown id, another clinic's and a patient's alike.
    """
    membership = _staff_memberships(tenant).filter(public_id=uuid).first()
    if membership is None:
        raise Http404
    return membership


# --- Guards -------------------------------------------------------------------------------


def _lock_admins(tenant: Tenant) -> list[int]:
    """Lock the clinic's active admin memberships until the transaction ends; their pks."""
    rows = Membership.objects.select_for_update().filter(tenant=tenant, role=Role.CLINIC_ADMIN, is_active=True)
    return list(rows.order_by("pk").values_list("pk", flat=True))


def _locked_membership(tenant: Tenant, membership: Membership) -> Membership:
    """The membership re-read under a row lock, so every check sees its committed state."""
    locked = (
        Membership.objects.select_for_update()
        .select_related("user")
        .filter(tenant=tenant, pk=membership.pk)
        .exclude(role=Role.PATIENT)
        .first()
    )
    if locked is None:
        raise TeamError("This person is no longer on the clinic's staff.")
    return locked


def _refuse_self(membership: Membership, actor: User, message: str) -> None:
    if membership.user_id == actor.pk:
        raise TeamError(message)


def _refuse_last_admin(membership: Membership, admin_pks: list[int]) -> None:
    """Refuse when `membership` is the clinic's only active admin."""
    if membership.pk in admin_pks and len(admin_pks) == 1:
        raise TeamError("The clinic must keep at least one active clinic admin. Make someone else an admin first.")


def _audit_member(
    *,
    action: str,
    tenant: Tenant,
    actor: User,
    actor_role: str,
    membership: Membership,
    request: HttpRequest | None,
    details: dict[str, Any] | None = None,
) -> None:
    audit_record(
        action=action,
        tenant=tenant,
        actor=actor,
        actor_role=actor_role,
        target_type="membership",
        target_id=str(membership.public_id),
        request=request,
        details={"role": membership.role, **(details or {})},
    )


# --- Changes --------------------------------------------------------------------------------


def member_role_change(
    *,
    tenant: Tenant,
    actor: User,
    actor_role: str,
    membership: Membership,
    role: str,
    request: HttpRequest | None = None,
) -> Membership:
    """Give a staff member another staff role. Audited: staff.role_changed.

    Refused for one's own membership, for the clinic's last active admin, for
    patient (not a staff role) and when the role is already theirs.
    """
    if role not in STAFF_ROLES:
        raise TeamError("Choose one of the staff roles.")
    with transaction.atomic(durable=True):
        admin_pks = _lock_admins(tenant)
        locked = _locked_membership(tenant, membership)
        _refuse_self(locked, actor, "You can't change your own role. Ask another clinic admin.")
        if locked.role == role:
            raise TeamError(f"This person is already {role_phrase(role)}.")
        if role != Role.CLINIC_ADMIN:
            _refuse_last_admin(locked, admin_pks)
        from_role = locked.role
        locked.role = role
        locked.save(update_fields=["role"])
        _audit_member(
            action="staff.role_changed",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            membership=locked,
            request=request,
            details={"from_role": from_role, "to_role": role},
        )
    return locked


def member_deactivate(
    *, tenant: Tenant, actor: User, actor_role: str, membership: Membership, request: HttpRequest | None = None
) -> int:
    """Deactivate a staff member and end their sessions server-side; returns how many ended.

    Their staff pages answer 403 from the next request. Refused for oneself
    and for the clinic's last active admin. Audited: staff.deactivated.
    """
    with transaction.atomic(durable=True):
        admin_pks = _lock_admins(tenant)
        locked = _locked_membership(tenant, membership)
        _refuse_self(locked, actor, "You can't deactivate yourself. Ask another clinic admin.")
        if not locked.is_active:
            raise TeamError("This person is already deactivated.")
        _refuse_last_admin(locked, admin_pks)
        locked.is_active = False
        locked.save(update_fields=["is_active"])
        ended = user_sessions_end_all(user=locked.user)
        _audit_member(
            action="staff.deactivated",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            membership=locked,
            request=request,
            details={"sessions_ended": ended},
        )
    return ended


def member_reactivate(
    *, tenant: Tenant, actor: User, actor_role: str, membership: Membership, request: HttpRequest | None = None
) -> Membership:
    """Give a deactivated member their access back, in the role they had. Audited: staff.reactivated."""
    with transaction.atomic(durable=True):
        locked = _locked_membership(tenant, membership)
        if locked.is_active:
            raise TeamError("This person is already active.")
        locked.is_active = True
        locked.save(update_fields=["is_active"])
        _audit_member(
            action="staff.reactivated",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            membership=locked,
            request=request,
        )
    return locked


def member_mfa_reset(
    *, tenant: Tenant, actor: User, actor_role: str, membership: Membership, request: HttpRequest | None = None
) -> int:
    """Remove the member's authenticator and recovery codes and end their sessions; returns how many ended.

    For a lost phone: at their next sign-in the password step leads to
    enrolment of a new authenticator. Refused for oneself (a stolen session
    must not be able to swap the authenticator). Audited: staff.mfa_reset
    (target: the user, whose account it changes).
    """
    with transaction.atomic(durable=True):
        locked = _locked_membership(tenant, membership)
        _refuse_self(locked, actor, "You can't reset your own authenticator. Ask another clinic admin.")
        user = locked.user
        mfa_devices_remove(user=user)
        ended = user_sessions_end_all(user=user)
        audit_record(
            action="staff.mfa_reset",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            target_type="user",
            target_id=str(user.public_id),
            request=request,
            details={"membership": str(locked.public_id), "sessions_ended": ended},
        )
    return ended


def member_unlock(
    *, tenant: Tenant, actor: User, actor_role: str, membership: Membership, request: HttpRequest | None = None
) -> None:
    """Clear the lockout of the member's account (not of any address). Audited: staff.unlocked.

    Refused when the account is not locked. Failures the person made from an
    address are forgotten with their account's, so that address's own count
    drops by them too.
    """
    with transaction.atomic(durable=True):
        locked = _locked_membership(tenant, membership)
        user = locked.user
        if not account_lockouts(emails=[user.email]):
            raise TeamError("This account is not locked.")
        cleared = login_failures_clear(email=user.email)
        audit_record(
            action="staff.unlocked",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            target_type="user",
            target_id=str(user.public_id),
            request=request,
            details={"membership": str(locked.public_id), "attempt_records_cleared": cleared},
        )
