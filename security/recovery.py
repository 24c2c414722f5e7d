"""Staff password recovery: "Forgot password" links and links sent by an admin.

A link carries a random token (secrets.token_urlsafe(32), 256 bits); only its
SHA-256 is stored (PasswordReset.token_hash). A link is single use, lasts
RESET_LIFETIME (one hour), opens only on the host it was issued for (a clinic's
host, or the platform host for operators), and is revoked when a newer link is
issued or the password is set. Setting a new password ends every session of
the account; the second factor is still asked at the next sign-in (the reset
proves the mailbox, not the authenticator).

Enumeration: the request step answers the same page, with the same status,
whether or not the address has an account, is throttled or locked. The
request itself does the same work either way (normalise, two rate-limit
counters, the lockout check, queue one task); looking the account up, issuing
the link, auditing and sending happen in `password_reset_deliver`, a Celery
task, so the response time cannot tell the cases apart. In the embedded
default (tasks run eagerly) the task runs inside the request; that mode is for
one developer's machine, not for the Internet.

Throttling: at most RESET_REQUESTS_PER_ADDRESS requests per address and
RESET_REQUESTS_PER_IP per client IP in RESET_REQUEST_WINDOW; beyond that no
link is issued (same answer). An account or IP locked out of signing in
(django-axes) gets no link either. Wrong or stale tokens count toward a
per-IP lockout (security.lockout), so links cannot be guessed at scale.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.core.mail import send_mail
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from audit.models import Outcome
from audit.recorder import audit_record
from portal.models import Tenant
from portal.net import client_ip
from portal.tenancy.resolution import platform_url, tenant_base_url
from security import lockout, ratelimit
from security.login_lockout import normalize_username, sign_in_allowed
from security.models import Membership, PasswordReset, User
from security.passwords import validate_password_for
from security.sessions import user_sessions_end_all
from security.team import TeamError

RESET_LIFETIME = timedelta(hours=1)
RESET_REQUEST_WINDOW = timedelta(minutes=15)
RESET_REQUESTS_PER_ADDRESS = 3
RESET_REQUESTS_PER_IP = 20
TOKEN_BYTES = 32
# token_urlsafe(32): 43 characters of the URL-safe base64 alphabet. Anything
# else is not a token we issued and is refused without a query.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")

# One message for every link that cannot be used: unknown, used, expired,
# revoked, another host's, or for an account that can no longer sign in.
LINK_UNUSABLE_MESSAGE = (
    "This password reset link can't be used. Links work once and for one hour; a newer link replaces "
    "older ones. Ask for a new link below."
)


class PasswordResetError(TeamError):
    """A reset step the rules refuse; the message is for the person at the screen."""


def token_hash(token: str) -> str:
    """The stored form of a token: SHA-256, hex (a 256-bit random token needs no slow hash)."""
    return hashlib.sha256(token.encode()).hexdigest()


def reset_link(*, tenant: Tenant | None, token: str) -> str:
    """The absolute link on the host the reset was asked on (the only host that accepts it)."""
    base = tenant_base_url(tenant) if tenant is not None else platform_url()
    return base.rstrip("/") + reverse("staff:password-reset", kwargs={"token": token})


def _eligible_user(*, email: str, tenant: Tenant | None) -> User | None:
    """The active account that may reset its password on this host, or None.

    On a clinic's host: an active member of that clinic. On the platform
    host: an active platform operator. Anyone else gets no link from here.
    """
    user = User.objects.filter(email=email, is_active=True).first()
    if user is None:
        return None
    if tenant is None:
        return user if user.is_platform_operator else None
    member = Membership.objects.filter(tenant=tenant, user=user, is_active=True).exists()
    return user if member else None


def _staff_role(*, user: User, tenant: Tenant | None) -> str:
    """The role whose password rules apply (staff rules for operators too)."""
    if tenant is not None:
        membership = Membership.objects.filter(tenant=tenant, user=user).first()
        if membership is not None:
            return membership.role
    return "clinic_admin"


# --- Asking for a link -------------------------------------------------------------------------


def password_reset_request(*, request: HttpRequest, email: str) -> None:
    """ "Forgot password": queue the link's delivery; the same work whatever the address.

    Never raises for an unknown, throttled or locked address and never says
    which it was (see the module docstring). Side effect: one
    `password_reset_deliver` task, queued on commit.
    """
    from security.tasks import password_reset_deliver

    address = normalize_username(email) or ""
    ip = client_ip(request)
    # Both counters always count, so a throttled request costs what any other does.
    within_address = ratelimit.hit(
        "pwreset-address",
        lockout.lockout_key("pwreset-address", address),
        limit=RESET_REQUESTS_PER_ADDRESS,
        window_seconds=int(RESET_REQUEST_WINDOW.total_seconds()),
    )
    within_ip = ratelimit.hit(
        "pwreset-ip",
        lockout.lockout_key("pwreset-ip", ip),
        limit=RESET_REQUESTS_PER_IP,
        window_seconds=int(RESET_REQUEST_WINDOW.total_seconds()),
    )
    if not within_address or not within_ip:
        refusal = "throttled"
    elif not sign_in_allowed(request, email=address):
        refusal = "locked"
    else:
        refusal = ""
    tenant = getattr(request, "tenant", None)
    from portal.logging import request_id_var

    transaction.on_commit(
        lambda: password_reset_deliver.delay(
            email=address,
            tenant_id=tenant.pk if tenant is not None else None,
            refusal=refusal,
            source_ip=ip,
            request_id=request_id_var.get(),
        ),
        robust=True,
    )


@dataclass(frozen=True)
class Delivery:
    """What `password_reset_issue` did: the outcome recorded, and the link when one was sent."""

    outcome: str
    reset: PasswordReset | None = None


def _issue(*, user: User, tenant: Tenant | None, sent_by: User | None) -> tuple[PasswordReset, str]:
    """A new link for `user`; every older open link of theirs is revoked."""
    now = timezone.now()
    PasswordReset.objects.filter(user=user, used_at__isnull=True, revoked_at__isnull=True).update(revoked_at=now)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    reset = PasswordReset.objects.create(
        user=user,
        tenant=tenant,
        token_hash=token_hash(token),
        sent_by=sent_by,
        created_at=now,
        expires_at=now + RESET_LIFETIME,
    )
    return reset, token


def _send_reset_email(*, tenant: Tenant | None, email: str, link: str, sent_by_admin: bool) -> None:
    where = tenant.name if tenant is not None else "the Settle platform"
    why = (
        f"An administrator of {where} sent you this link to set a new password."
        if sent_by_admin
        else f"Someone (we hope you) asked to reset the password of your staff account at {where}."
    )
    body = (
        f"{why}\n\n"
        f"Set a new password here (the link works once, for one hour):\n{link}\n\n"
        "You will still sign in with a code from your authenticator app afterwards.\n\n"
        "If you did not ask for this, ignore this email: your password stays as it is. "
        "Nothing about your account was changed."
    )
    send_mail(f"Reset your Settle password ({where})", body, None, [email])


def password_reset_issue(
    *, email: str, tenant: Tenant | None, refusal: str = "", source_ip: str | None = None
) -> Delivery:
    """Issue and email a link when `email` may have one here; audit the request either way.

    Called by the `password_reset_deliver` task. `refusal` ("throttled" or
    "locked") is what the request step decided; no link is issued then.
    The audit event names the account only when there is one, never the
    address typed.
    """
    with transaction.atomic():
        user = _eligible_user(email=email, tenant=tenant) if email else None
        if refusal or user is None:
            result = refusal or "no_account"
            audit_record(
                action="auth.password_reset_requested",
                tenant=tenant,
                outcome=Outcome.DENIED,
                target_type="user" if user else "",
                target_id=str(user.public_id) if user else "",
                source_ip=source_ip,
                details={"result": result},
            )
            return Delivery(outcome=result)
        reset, token = _issue(user=user, tenant=tenant, sent_by=None)
        audit_record(
            action="auth.password_reset_requested",
            tenant=tenant,
            target_type="user",
            target_id=str(user.public_id),
            source_ip=source_ip,
            details={"result": "sent", "expires_minutes": int(RESET_LIFETIME.total_seconds() // 60)},
        )
        link = reset_link(tenant=tenant, token=token)
        transaction.on_commit(
            lambda: _send_reset_email(tenant=tenant, email=user.email, link=link, sent_by_admin=False), robust=True
        )
    return Delivery(outcome="sent", reset=reset)


def password_reset_send(
    *,
    tenant: Tenant,
    actor: User,
    actor_role: str,
    membership: Membership,
    request: HttpRequest | None = None,
) -> PasswordReset:
    """A clinic admin (staff.manage) emails a member a reset link; audited as staff.password_reset_sent.

    Refused for a deactivated member. Older open links of theirs are revoked.
    """
    if not membership.is_active or not membership.user.is_active:
        raise PasswordResetError("This member is deactivated. Reactivate them before sending a reset link.")
    with transaction.atomic():
        reset, token = _issue(user=membership.user, tenant=tenant, sent_by=actor)
        audit_record(
            action="staff.password_reset_sent",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            target_type="user",
            target_id=str(membership.user.public_id),
            request=request,
            details={"expires_minutes": int(RESET_LIFETIME.total_seconds() // 60)},
        )
        link = reset_link(tenant=tenant, token=token)
        email = membership.user.email
        transaction.on_commit(
            lambda: _send_reset_email(tenant=tenant, email=email, link=link, sent_by_admin=True), robust=True
        )
    return reset


# --- Using a link ---------------------------------------------------------------------------------


def _token_ip_key(request: HttpRequest) -> str:
    return lockout.lockout_key("pwreset-token-ip", client_ip(request))


def reset_links_locked(request: HttpRequest) -> bool:
    """True while this client IP is locked out for presenting bad reset links."""
    return lockout.is_locked(_token_ip_key(request))


def _usable(reset: PasswordReset | None, *, tenant: Tenant | None) -> PasswordReset | None:
    if reset is None or not reset.is_usable:
        return None
    if reset.tenant_id != (tenant.pk if tenant is not None else None):
        return None
    if _eligible_user(email=reset.user.email, tenant=tenant) is None:
        return None
    return reset


def password_reset_lookup(*, request: HttpRequest, hashed: str) -> PasswordReset | None:
    """The usable reset behind a stored token hash on this host, else None."""
    tenant = getattr(request, "tenant", None)
    reset = PasswordReset.objects.select_related("user").filter(token_hash=hashed).first()
    return _usable(reset, tenant=tenant)


def password_reset_open(*, request: HttpRequest, token: str) -> str | None:
    """Check a link's token; the hash to keep in the session when usable, else None.

    A token that is not usable here counts as a failure toward the IP's
    lockout, so links cannot be guessed; the failure is audited.
    """
    hashed = token_hash(token) if _TOKEN_SHAPE.fullmatch(token) else None
    reset = password_reset_lookup(request=request, hashed=hashed) if hashed else None
    if reset is not None:
        return hashed
    locked = lockout.record_failure(_token_ip_key(request))
    audit_record(
        action="auth.password_reset_refused",
        tenant=getattr(request, "tenant", None),
        outcome=Outcome.DENIED if locked else Outcome.FAILURE,
        request=request,
        details={"locked": locked},
    )
    return None


def password_reset_complete(*, request: HttpRequest, hashed: str, password: str) -> int:
    """Set the new password through a usable link; every session of the account ends.

    Raises PasswordResetError when the link is no longer usable and
    django.core.exceptions.ValidationError when the password fails the
    staff rules. Returns how many sessions were ended. The person is not
    signed in: they sign in with the new password and their second factor.
    """
    tenant = getattr(request, "tenant", None)
    with transaction.atomic():
        row = PasswordReset.objects.select_for_update().filter(token_hash=hashed).first()
        reset = _usable(row, tenant=tenant)
        if reset is None:
            raise PasswordResetError(LINK_UNUSABLE_MESSAGE)
        user = reset.user
        validate_password_for(user=user, password=password, role=_staff_role(user=user, tenant=tenant))
        user.set_password(password)
        user.save(update_fields=["password"])
        now = timezone.now()
        reset.used_at = now
        reset.save(update_fields=["used_at"])
        PasswordReset.objects.filter(user=user, used_at__isnull=True, revoked_at__isnull=True).update(revoked_at=now)
        ended = user_sessions_end_all(user=user)
        audit_record(
            action="auth.password_reset_completed",
            tenant=tenant,
            actor=user,
            target_type="user",
            target_id=str(user.public_id),
            request=request,
            details={"sessions_ended": ended, "sent_by_admin": reset.sent_by_id is not None},
        )
    return ended
