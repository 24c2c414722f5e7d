"""Staff invitations: single use, expiring after 72 hours, bound to one clinic.

A clinic admin (staff.manage, checked by the views) invites an email address
in a staff role. The link carries a random token (secrets.token_urlsafe(32));
only its SHA-256 is stored (StaffInvitation.token_hash), so the table cannot
be used to accept an invitation. The token is looked up only within the
clinic whose host serves the link: another clinic's link is "not valid".

What is revealed to whom:
- The admin learns only whether the email is already on *their* clinic's
  staff. Invitations behave the same whether or not the email has a Settle
  account at another clinic.
- The invitee page asks for a new password when the email has no account,
  and for the existing password when it has one (one account per person).
  Only the holder of a valid token for that email sees which.

Accepting checks an existing account's password through django-axes, so
wrong passwords count toward that account's lockout like any sign-in.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from uuid import UUID

from django.contrib.auth import authenticate
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest
from django.urls import reverse
from django.utils import timezone

from audit.recorder import audit_record
from portal.models import Tenant
from portal.tenancy.resolution import tenant_base_url
from security.models import Membership, Role, StaffInvitation, User
from security.passwords import validate_password_for
from security.roles import role_phrase
from security.team import STAFF_ROLES, TeamError

INVITATION_LIFETIME = timedelta(hours=72)
TOKEN_BYTES = 32
# token_urlsafe(32): 43 characters of the URL-safe base64 alphabet. Anything
# else is not a token we issued and is refused without a query.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
_EMAIL_MAX_LENGTH = 254


class InvitationError(TeamError):
    """An invitation step the rules refuse; the message is for the person at the screen."""


class InvitationPasswordError(InvitationError):
    """The password given for an existing account does not match it (counted toward lockout)."""


class InvitationLockedError(InvitationError):
    """The existing account (or the address) is locked out of signing in."""


class InvitationState(StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    USED = "used"
    # Unknown, malformed, revoked, replaced, or another clinic's: one answer for all.
    INVALID = "invalid"


STATE_MESSAGES: dict[InvitationState, str] = {
    InvitationState.EXPIRED: (
        "This invitation has expired. Invitations last 72 hours; ask your clinic admin to send a new one."
    ),
    InvitationState.USED: (
        "This invitation has already been used. If you accepted it, sign in with your email and password."
    ),
    InvitationState.INVALID: (
        "This invitation link is not valid. It may have been withdrawn or replaced by a newer invitation; "
        "check that you opened the whole link from the most recent email, or ask your clinic admin."
    ),
}


def token_hash(token: str) -> str:
    """The stored form of a token: SHA-256, hex (a 256-bit random token needs no slow hash)."""
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_link(*, tenant: Tenant, token: str) -> str:
    """The absolute link on the clinic's own host (the only host that accepts it)."""
    return tenant_base_url(tenant).rstrip("/") + reverse("team:accept", kwargs={"token": token})


# --- Reads --------------------------------------------------------------------------------


def invitations_pending(*, tenant: Tenant) -> list[StaffInvitation]:
    """The clinic's invitations that can still be accepted, newest first."""
    return list(
        StaffInvitation.objects.filter(
            tenant=tenant, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
        )
        .select_related("invited_by")
        .order_by("-created_at")
    )


def access_invitation_by_uuid(*, tenant: Tenant, uuid: UUID) -> StaffInvitation:
    """An invitation of `tenant` by public id, for staff.manage views; Http404 for unknown and another clinic's."""
    invitation = StaffInvitation.objects.filter(tenant=tenant, public_id=uuid).first()
    if invitation is None:
        raise Http404
    return invitation


def invitation_state(invitation: StaffInvitation | None) -> InvitationState:
    if invitation is None or invitation.revoked_at is not None:
        return InvitationState.INVALID
    if invitation.accepted_at is not None:
        return InvitationState.USED
    if invitation.expires_at <= timezone.now():
        return InvitationState.EXPIRED
    return InvitationState.VALID


@dataclass(frozen=True)
class InvitationLookup:
    state: InvitationState
    # Set only when state is VALID.
    invitation: StaffInvitation | None


def invitation_lookup_by_hash(*, tenant: Tenant, hashed: str) -> InvitationLookup:
    """The invitation of `tenant` whose token has this hash, and whether it can be accepted."""
    invitation = StaffInvitation.objects.filter(tenant=tenant, token_hash=hashed).first()
    state = invitation_state(invitation)
    return InvitationLookup(state=state, invitation=invitation if state == InvitationState.VALID else None)


def invitation_lookup(*, tenant: Tenant, token: str) -> InvitationLookup:
    """Look a link's token up within `tenant` only (the clinic whose host serves the link)."""
    if not _TOKEN_SHAPE.fullmatch(token):
        return InvitationLookup(state=InvitationState.INVALID, invitation=None)
    return invitation_lookup_by_hash(tenant=tenant, hashed=token_hash(token))


def invitation_for_token(*, tenant: Tenant, token: str) -> StaffInvitation | None:
    """The pending invitation of `tenant` for this token; None for unknown, expired, used and revoked."""
    return invitation_lookup(tenant=tenant, token=token).invitation


def invitation_has_account(*, invitation: StaffInvitation) -> bool:
    """Whether the invited email already has a Settle account (at any clinic).

    Only for the holder of a valid token for that email: the accept page
    needs it to ask for the right password. Never shown to anyone else.
    """
    return User.objects.filter(email__iexact=invitation.email).exists()


# --- Invite and revoke -----------------------------------------------------------------------


def _normalised_email(email: str) -> str:
    cleaned = email.strip().lower()
    if not cleaned or len(cleaned) > _EMAIL_MAX_LENGTH or "@" not in cleaned:
        raise InvitationError("Enter a valid email address.")
    return cleaned


def _send_invitation_email(*, tenant: Tenant, email: str, role: str, link: str) -> None:
    body = (
        f"You have been invited to join the staff of {tenant.name} on Settle as {role_phrase(role)}.\n\n"
        f"To accept, open this link within 72 hours:\n\n{link}\n\n"
        "The link works once. You will set up an authenticator app on your phone as part of signing in.\n"
        "If you were not expecting this invitation, ignore this email; nothing happens unless the link is opened "
        "and accepted.\n"
    )
    send_mail(f"Your invitation to {tenant.name} on Settle", body, None, [email])


def invitation_create(
    *,
    tenant: Tenant,
    actor: User,
    actor_role: str,
    email: str,
    role: str,
    request: HttpRequest | None = None,
) -> StaffInvitation:
    """Invite `email` to the clinic's staff in `role` and email the link (after commit).

    A pending invitation for the same email is revoked and replaced (its
    link stops working). Refused for a non-staff role and for an email that
    is already an active staff member of this clinic; nothing about other
    clinics is looked at. Audited: staff.invited (one event, replacing or not).
    """
    with transaction.atomic(durable=True):
        return invitation_issue(
            tenant=tenant, actor=actor, actor_role=actor_role, email=email, role=role, request=request
        )


def invitation_issue(
    *,
    tenant: Tenant,
    actor: User,
    actor_role: str,
    email: str,
    role: str,
    request: HttpRequest | None = None,
) -> StaffInvitation:
    """invitation_create's work, inside the caller's transaction (which must be open).

    For acts that invite as one of their steps (the platform console creates
    a clinic and invites its first admin in one transaction): the email is
    queued on that transaction's commit, so a rolled-back act sends nothing.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("invitation_issue needs an open transaction (use invitation_create)")
    email = _normalised_email(email)
    if role not in STAFF_ROLES:
        raise InvitationError("Choose one of the staff roles.")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = timezone.now()
    if (
        Membership.objects.filter(tenant=tenant, user__email__iexact=email, is_active=True)
        .exclude(role=Role.PATIENT)
        .exists()
    ):
        raise InvitationError(f"{email} is already on this clinic's staff.")
    replaced = list(
        StaffInvitation.objects.select_for_update()
        .filter(tenant=tenant, email=email, accepted_at__isnull=True, revoked_at__isnull=True)
        .values_list("pk", "public_id")
    )
    StaffInvitation.objects.filter(pk__in=[pk for pk, _ in replaced]).update(revoked_at=now)
    invitation = StaffInvitation.objects.create(
        tenant=tenant,
        email=email,
        role=role,
        token_hash=token_hash(token),
        invited_by=actor,
        created_at=now,
        expires_at=now + INVITATION_LIFETIME,
    )
    audit_record(
        action="staff.invited",
        tenant=tenant,
        actor=actor,
        actor_role=actor_role,
        target_type="invitation",
        target_id=str(invitation.public_id),
        request=request,
        details={"role": role, "replaces": [str(public_id) for _, public_id in replaced]},
    )
    link = invitation_link(tenant=tenant, token=token)
    # robust: a mail server failure is logged, not turned into an error
    # page after the invitation was saved; the admin can invite again.
    transaction.on_commit(lambda: _send_invitation_email(tenant=tenant, email=email, role=role, link=link), robust=True)
    return invitation


def invitation_revoke(
    *,
    tenant: Tenant,
    actor: User,
    actor_role: str,
    invitation: StaffInvitation,
    request: HttpRequest | None = None,
) -> None:
    """Withdraw a pending invitation: its link stops working. Audited: staff.invitation_revoked."""
    with transaction.atomic(durable=True):
        locked = StaffInvitation.objects.select_for_update().filter(tenant=tenant, pk=invitation.pk).first()
        if locked is None or invitation_state(locked) != InvitationState.VALID:
            raise InvitationError("This invitation is no longer pending, so there is nothing to revoke.")
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at"])
        audit_record(
            action="staff.invitation_revoked",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            target_type="invitation",
            target_id=str(locked.public_id),
            request=request,
            details={"role": locked.role},
        )


# --- Accept ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Acceptance:
    user: User
    membership: Membership
    new_account: bool


def _authenticate_existing(request: HttpRequest, *, email: str, password: str) -> User:
    """The existing account, if `password` is its password; through axes, so failures count.

    Runs outside any transaction: a rolled-back failure would not count.
    """
    user = authenticate(request, username=email, password=password)
    if getattr(request, "axes_locked_out", False):
        raise InvitationLockedError("Too many failed attempts. This account is locked for now.")
    if not isinstance(user, User):
        raise InvitationPasswordError(
            "That password does not match your existing Settle account. Use the password you sign in with."
        )
    return user


def _new_account(*, email: str, full_name: str, password: str, role: str) -> User:
    """An unsaved account with its password checked (staff rule for `role`) and hashed.

    Hashing (Argon2, deliberately slow) happens here, before the
    invitation's row is locked.
    """
    name = full_name.strip()
    if not name:
        raise InvitationError("Enter your full name.")
    user = User(email=email, full_name=name)
    validate_password_for(user=user, password=password, role=role)
    user.set_password(password)
    return user


def _membership_grant(*, tenant: Tenant, user: User, role: str) -> Membership:
    """Create the membership, or reactivate a deactivated one, in `role`."""
    membership = Membership.objects.select_for_update().filter(tenant=tenant, user=user).first()
    if membership is None:
        return Membership.objects.create(tenant=tenant, user=user, role=role)
    if membership.is_active and membership.role != Role.PATIENT:
        raise InvitationError("You are already on this clinic's staff. Sign in with your email and password.")
    membership.role = role
    membership.is_active = True
    membership.save(update_fields=["role", "is_active"])
    return membership


def invitation_accept(
    *,
    request: HttpRequest,
    tenant: Tenant,
    invitation: StaffInvitation,
    password: str,
    full_name: str = "",
) -> Acceptance:
    """Accept an invitation: the person joins the staff in the invited role.

    No account for the email: one is created with `full_name` and
    `password` (checked by the staff password rule). An account exists (one
    per person): `password` must be its password (failures count toward
    lockout); `full_name` is ignored. The membership is created or
    reactivated. Single use: the invitation row is locked and re-checked, so
    of two concurrent accepts one fails. Audited: staff.invitation_accepted
    (actor: the new member). Signing in is the caller's (the view's) step.
    """
    existing = User.objects.filter(email__iexact=invitation.email).first()
    if existing is not None:
        account = _authenticate_existing(request, email=existing.email, password=password)
        new_account = False
    else:
        account = _new_account(email=invitation.email, full_name=full_name, password=password, role=invitation.role)
        new_account = True
    try:
        with transaction.atomic(durable=True):
            locked = StaffInvitation.objects.select_for_update().filter(tenant=tenant, pk=invitation.pk).first()
            state = invitation_state(locked)
            if locked is None or state != InvitationState.VALID:
                raise InvitationError(STATE_MESSAGES[state])
            if new_account:
                account.save(force_insert=True)
            membership = _membership_grant(tenant=tenant, user=account, role=locked.role)
            locked.accepted_at = timezone.now()
            locked.accepted_by = account
            locked.save(update_fields=["accepted_at", "accepted_by"])
            audit_record(
                action="staff.invitation_accepted",
                tenant=tenant,
                actor=account,
                actor_role=locked.role,
                target_type="invitation",
                target_id=str(locked.public_id),
                request=request,
                details={"role": locked.role, "membership": str(membership.public_id), "new_account": new_account},
            )
    except IntegrityError as exc:
        # The email got an account between the page and this request (another
        # clinic's invitation accepted at the same moment): start again.
        raise InvitationError(
            "An account for this email was created a moment ago. Open the invitation link again to continue."
        ) from exc
    return Acceptance(user=account, membership=membership, new_account=new_account)
