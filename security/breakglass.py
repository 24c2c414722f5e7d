"""Break-glass: a platform operator's emergency access to one clinic.

SECURITY.md: "time-boxed, reason required, alerts, audited". A platform
operator (User.is_platform_operator) has no access to a clinic's data until
they start a grant here; while it is live, security.permissions gives them
BREAK_GLASS_ROLE at that clinic, and only there.

- Time-boxed: a grant lasts one of ALLOWED_DURATIONS and is never extended.
  Expiry needs no action: break_glass_live_grant ignores expired grants, so
  access ends at expires_at on the next request. Ending early sets ended_at.
- Reason required: 20 to 1000 characters, kept on the grant row only. The
  reason is free text written by the operator and is not checked for PHI, so
  it never goes into audit details (audit.recorder refuses free text) nor
  into logs; the events reference the grant's public id instead.
- Alerts: every active clinic admin of the clinic is emailed when a grant
  starts (with the operator's email, the time box and the reason) and when
  it is ended early, after the transaction commits.
- Audited: breakglass.started and breakglass.ended in the clinic's chain,
  actor the operator, actor_role BREAK_GLASS_ROLE. Everything the operator
  does during the grant is audited by the views as usual, with that role.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from django.core.mail import send_mail
from django.db import transaction
from django.http import Http404, HttpRequest
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.http import urlencode

from audit.recorder import audit_record
from portal.models import Tenant
from portal.tenancy.resolution import tenant_base_url
from security.models import BreakGlassGrant, Membership, Role, User
from security.permissions import BREAK_GLASS_ROLE, OPERATOR_PERMISSIONS, PERMISSIONS, ROLE_PERMISSIONS
from security.roles import role_phrase

logger = logging.getLogger(__name__)

# Minutes a grant may last. Short on purpose: an operator who needs longer
# starts a new grant (with a new reason, and a new alert to the clinic).
ALLOWED_DURATIONS: tuple[int, ...] = (15, 30, 60)
REASON_MIN_LENGTH = 20
REASON_MAX_LENGTH = 1000  # BreakGlassGrant.reason's max_length

REASON_FIELD = "reason"
MINUTES_FIELD = "minutes"


class BreakGlassError(Exception):
    """A break-glass request the rules refuse; the message is for the operator at the screen.

    `field` names the form field the message belongs to ("reason",
    "minutes"), or is None when it concerns the request as a whole.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# --- Reads ------------------------------------------------------------------------------


def break_glass_live_grant(*, tenant: Tenant, operator: User) -> BreakGlassGrant | None:
    """The operator's live grant at `tenant`, if any (not ended, not expired)."""
    return (
        BreakGlassGrant.objects.filter(
            tenant=tenant, operator=operator, ended_at__isnull=True, expires_at__gt=timezone.now()
        )
        .order_by("-started_at")
        .first()
    )


def access_grant_by_uuid(*, tenant: Tenant, operator: User, uuid: UUID) -> BreakGlassGrant:
    """One of the operator's own grants at `tenant`, by public id (permission platform.break_glass).

    Http404 for an unknown id, another clinic's grant and another
    operator's grant alike: an operator ends only their own access.
    """
    grant = (
        BreakGlassGrant.objects.select_related("operator")
        .filter(tenant=tenant, operator=operator, public_id=uuid)
        .first()
    )
    if grant is None:
        raise Http404
    return grant


def break_glass_permission_labels() -> list[str]:
    """What an operator may do during a grant, in words, from the permission registry.

    Derived rather than written out, so the page and the alert cannot drift
    from what security.permissions actually allows.
    """
    # What the grant adds to what every operator holds (the platform's own pages).
    held = ROLE_PERMISSIONS[BREAK_GLASS_ROLE] - OPERATOR_PERMISSIONS
    return [PERMISSIONS[name] for name in sorted(held)]


def minutes_left(grant: BreakGlassGrant) -> int:
    """Whole minutes until the grant expires, rounded up (0 once it is over)."""
    if not grant.is_live:
        return 0
    seconds = (grant.expires_at - timezone.now()).total_seconds()
    return int(-(-seconds // 60))


# --- Checks -------------------------------------------------------------------------------


def _checked_reason(reason: str) -> str:
    """The reason, stripped, if it is long enough to mean something and fits the column."""
    cleaned = reason.strip()
    if len(cleaned) < REASON_MIN_LENGTH:
        raise BreakGlassError(
            f"Give a reason of at least {REASON_MIN_LENGTH} characters: what happened, and why you need "
            "access to this clinic. The clinic's admins will read it.",
            field=REASON_FIELD,
        )
    if len(cleaned) > REASON_MAX_LENGTH:
        raise BreakGlassError(
            f"Keep the reason to {REASON_MAX_LENGTH} characters or fewer (it has {len(cleaned)}).",
            field=REASON_FIELD,
        )
    if "\x00" in cleaned:
        # PostgreSQL text cannot hold NUL; refuse it here rather than fail in the database.
        raise BreakGlassError("The reason contains a character that is not allowed.", field=REASON_FIELD)
    return cleaned


def _checked_minutes(minutes: int) -> int:
    if isinstance(minutes, bool) or minutes not in ALLOWED_DURATIONS:
        choices = ", ".join(str(m) for m in ALLOWED_DURATIONS[:-1])
        raise BreakGlassError(f"Choose {choices} or {ALLOWED_DURATIONS[-1]} minutes.", field=MINUTES_FIELD)
    return minutes


def _lock_operator(operator: User) -> None:
    """Lock the operator's user row until the transaction ends, if they are an active platform operator.

    The lock serialises one operator's starts, so two requests at the same
    moment cannot both pass the "no live grant yet" check.
    """
    locked = list(
        User.objects.select_for_update()
        .filter(pk=operator.pk, is_active=True, is_platform_operator=True)
        .values_list("pk", flat=True)
    )
    if not locked:
        raise BreakGlassError("Only active platform operators can start emergency access.")


# --- Alerts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Alert:
    """An email to the clinic's admins, built inside the transaction and sent after commit."""

    grant_id: str
    subject: str
    body: str
    recipients: tuple[str, ...]


def _clinic_admin_emails(tenant: Tenant) -> tuple[str, ...]:
    rows = Membership.objects.filter(tenant=tenant, role=Role.CLINIC_ADMIN, is_active=True, user__is_active=True)
    return tuple(dict.fromkeys(rows.order_by("user__email").values_list("user__email", flat=True)))


def _clinic_time(tenant: Tenant, value: datetime) -> str:
    """A time as the clinic reads it: in the clinic's time zone, with the zone named."""
    return dateformat.format(timezone.localtime(value, ZoneInfo(tenant.timezone)), "M j, Y g:i A T")


def _audit_trail_url(tenant: Tenant, grant: BreakGlassGrant) -> str:
    """The clinic's audit search over the grant's days (the search filters by UTC day)."""
    query = urlencode(
        {
            "date_from": grant.started_at.astimezone(UTC).date().isoformat(),
            "date_to": grant.expires_at.astimezone(UTC).date().isoformat(),
        }
    )
    return f"{tenant_base_url(tenant).rstrip('/')}{reverse('audit:search')}?{query}"


def _review_paragraph(tenant: Tenant, grant: BreakGlassGrant) -> str:
    return (
        "Everything the operator does is recorded in your clinic's audit trail under their account, "
        f'as {role_phrase(BREAK_GLASS_ROLE)} (role "{BREAK_GLASS_ROLE}"). Your compliance officer can review it at:\n\n'
        f"{_audit_trail_url(tenant, grant)}\n\n"
        f"Reference for this access: {grant.public_id}\n"
    )


def _started_alert(tenant: Tenant, grant: BreakGlassGrant, minutes: int) -> _Alert:
    abilities = "\n".join(f"- {label}" for label in break_glass_permission_labels())
    body = (
        f"A Settle platform operator has started emergency (break-glass) access to {tenant.name}.\n\n"
        f"Operator: {grant.operator.email}\n"
        f"Started: {_clinic_time(tenant, grant.started_at)}\n"
        f"Ends: {_clinic_time(tenant, grant.expires_at)} ({minutes} minutes), or earlier if they end it\n\n"
        f"Reason they gave:\n{grant.reason}\n\n"
        f"Until then they can:\n{abilities}\n"
        "They cannot export the audit trail or rotate keys.\n\n"
        f"{_review_paragraph(tenant, grant)}\n"
        "If you did not expect this, contact Settle support straight away.\n"
    )
    return _Alert(
        grant_id=str(grant.public_id),
        subject=f"Emergency access to {tenant.name} started by a Settle operator",
        body=body,
        recipients=_clinic_admin_emails(tenant),
    )


def _ended_alert(tenant: Tenant, grant: BreakGlassGrant) -> _Alert:
    assert grant.ended_at is not None
    body = (
        f"The emergency (break-glass) access of a Settle platform operator to {tenant.name} has ended.\n\n"
        f"Operator: {grant.operator.email}\n"
        f"Started: {_clinic_time(tenant, grant.started_at)}\n"
        f"Ended: {_clinic_time(tenant, grant.ended_at)} (it would have expired at "
        f"{_clinic_time(tenant, grant.expires_at)})\n\n"
        f"{_review_paragraph(tenant, grant)}"
    )
    return _Alert(
        grant_id=str(grant.public_id),
        subject=f"Emergency access to {tenant.name} ended",
        body=body,
        recipients=_clinic_admin_emails(tenant),
    )


def _send_alert(alert: _Alert) -> None:
    """Email each admin separately (one bad address must not stop the others).

    Runs after commit: the grant stands whatever the mail server says, so a
    failure is logged for the platform's on-call rather than shown to the
    operator as an error. The log names the grant and the exception type
    only; the message body (with the reason) never reaches the logs.
    """
    if not alert.recipients:
        logger.error("break-glass alert for grant %s: the clinic has no active clinic admin to email", alert.grant_id)
        return
    for recipient in alert.recipients:
        try:
            send_mail(alert.subject, alert.body, None, [recipient])
        except Exception as error:  # noqa: BLE001 - any mail failure is logged and the others still go out
            logger.error("break-glass alert for grant %s was not sent: %s", alert.grant_id, type(error).__name__)


# --- Start and end --------------------------------------------------------------------------


def break_glass_start(
    *, request: HttpRequest | None, tenant: Tenant, operator: User, reason: str, minutes: int
) -> BreakGlassGrant:
    """Start the operator's emergency access to `tenant` for `minutes` (permission platform.break_glass).

    Refused (BreakGlassError, nothing written) for a user who is not an
    active platform operator, a reason outside 20-1000 characters once
    stripped, a duration not in ALLOWED_DURATIONS, and while the operator
    already holds a live grant at this clinic. Audited: breakglass.started.
    Side effect after commit: the clinic's active admins are emailed.
    """
    cleaned = _checked_reason(reason)
    minutes = _checked_minutes(minutes)
    with transaction.atomic(durable=True):
        _lock_operator(operator)
        if break_glass_live_grant(tenant=tenant, operator=operator) is not None:
            raise BreakGlassError(
                "You already have live emergency access to this clinic. End it before starting another."
            )
        now = timezone.now()
        grant = BreakGlassGrant.objects.create(
            tenant=tenant,
            operator=operator,
            reason=cleaned,
            started_at=now,
            expires_at=now + timedelta(minutes=minutes),
        )
        audit_record(
            action="breakglass.started",
            tenant=tenant,
            actor=operator,
            actor_role=BREAK_GLASS_ROLE,
            target_type="break_glass_grant",
            target_id=str(grant.public_id),
            request=request,
            details={"duration_minutes": minutes},
        )
        alert = _started_alert(tenant, grant, minutes)
        transaction.on_commit(lambda: _send_alert(alert))
    return grant


def break_glass_end(*, request: HttpRequest | None, grant: BreakGlassGrant) -> BreakGlassGrant:
    """End a live grant now, before it expires (permission platform.break_glass, own grant).

    The caller fetches the grant with access_grant_by_uuid, so it is the
    operator's own at the request's clinic. Refused (BreakGlassError) when the
    grant has already ended or expired. Audited: breakglass.ended. Side
    effect after commit: the clinic's active admins are emailed.
    """
    with transaction.atomic(durable=True):
        locked = (
            BreakGlassGrant.objects.select_for_update(of=("self",))
            .filter(tenant_id=grant.tenant_id, pk=grant.pk)
            .select_related("operator", "tenant")
            .first()
        )
        if locked is None or not locked.is_live:
            raise BreakGlassError("This emergency access has already ended; there is nothing to end.")
        left = minutes_left(locked)
        locked.ended_at = timezone.now()
        locked.save(update_fields=["ended_at"])
        audit_record(
            action="breakglass.ended",
            tenant=locked.tenant,
            actor=locked.operator,
            actor_role=BREAK_GLASS_ROLE,
            target_type="break_glass_grant",
            target_id=str(locked.public_id),
            request=request,
            details={"minutes_left": left},
        )
        alert = _ended_alert(locked.tenant, locked)
        transaction.on_commit(lambda: _send_alert(alert))
    return locked
