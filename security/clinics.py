"""Onboarding and running clinics: the platform console's services (permission platform.clinics).

A platform operator creates a clinic (and, in the same transaction, invites
its first clinic admin through security.invitations), edits its profile,
suspends and reactivates it. Each act is audited in the platform chain
(tenant None), actor the operator with PLATFORM_OPERATOR_ROLE; the
invitation is also audited in the clinic's own chain (staff.invited), where
the clinic's compliance officer sees it.

Suspension and `is_active`:
- `suspended_at` (set here) is the reversible, audited business act: the
  clinic's hosts answer every request, staff sign-in and signed-in staff
  sessions included, with a friendly "temporarily unavailable" page
  (portal.tenancy.middleware). Nothing is deleted; processor webhooks on the
  platform host still settle payments already under way, so balances stay
  true. The operator's free-text reason stays on the row (it is not
  checked for PHI, so it never enters audit details or logs).
- `is_active` keeps its meaning: whether the clinic exists on the platform
  at all. False (Django admin only, for off-boarding) makes its hosts
  unknown, the same 404 as a name that never existed. The console does not
  change it.

The slug (the clinic's address) and the currency (its balances' unit) are
set at creation and not edited here: links already sent carry the slug, and
ledger entries carry no currency of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.http import Http404, HttpRequest
from django.utils import timezone

from audit.recorder import audit_record
from portal.models import RESERVED_SLUGS, Tenant, slug_validator
from portal.tenancy.context import platform_scope, tenant_scope
from security.domains import DomainError, domain_normalise, domain_token_new
from security.invitations import InvitationError, invitation_issue
from security.models import Membership, Role, StaffInvitation, User
from security.permissions import PLATFORM_OPERATOR_ROLE

SUSPENSION_REASON_MIN = 10
SUSPENSION_REASON_MAX = 200  # Tenant.suspension_reason's max_length

# Profile fields the console edits after creation, in form order.
EDITABLE_FIELDS: tuple[str, ...] = ("name", "timezone", "support_phone", "support_email", "custom_domain")


class ClinicInvalid(Exception):
    """Input the rules refuse: field name -> messages for the person at the screen. Nothing was saved."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items()))
        self.errors = errors


class ClinicStateError(Exception):
    """An act that does not fit the clinic's state (suspending a suspended clinic); the message says so."""


@dataclass(frozen=True)
class ClinicProfile:
    """What the operator types about a clinic (strings as entered; the service normalises)."""

    name: str
    timezone: str
    support_phone: str = ""
    support_email: str = ""
    custom_domain: str = ""


# --- Reads ----------------------------------------------------------------------------------


def clinics_all() -> list[Tenant]:
    """Every clinic on the platform, by name (the console's list)."""
    return list(Tenant.objects.order_by("name", "pk"))


def access_clinic_by_uuid(*, uuid: UUID) -> Tenant:
    """A clinic by public id for the platform console (platform.clinics); Http404 when there is none."""
    tenant = Tenant.objects.filter(public_id=uuid).first()
    if tenant is None:
        raise Http404
    return tenant


def clinic_staff_counts(*, tenants: list[Tenant]) -> dict[int, int]:
    """Active staff members (not patients) per clinic pk, in one query."""
    with platform_scope():
        rows = (
            Membership.objects.filter(tenant__in=tenants, is_active=True)
            .exclude(role=Role.PATIENT)
            .values("tenant_id")
            .annotate(n=Count("pk"))
        )
        return {row["tenant_id"]: row["n"] for row in rows}


def clinic_invitations_pending(*, tenant: Tenant) -> list[StaffInvitation]:
    """The clinic's pending clinic-admin invitations, newest first (the clinic's page)."""
    with tenant_scope(tenant):
        return list(
            StaffInvitation.objects.filter(
                tenant=tenant,
                role=Role.CLINIC_ADMIN,
                accepted_at__isnull=True,
                revoked_at__isnull=True,
                expires_at__gt=timezone.now(),
            ).order_by("-created_at")
        )


# --- Validation -----------------------------------------------------------------------------


def _slug_problems(slug: str) -> list[str]:
    if not slug:
        return ["Enter the clinic's address (its slug), such as lakeside."]
    try:
        slug_validator(slug)
    except ValidationError as exc:
        return [f"{slug!r} is not a valid address. {' '.join(exc.messages)}"]
    if slug in RESERVED_SLUGS:
        return [f"{slug!r} is reserved for the platform's own use. Choose another address."]
    if Tenant.objects.filter(slug=slug).exists():
        return [f"{slug!r} is already taken by another clinic. Choose another address."]
    return []


def _domain_or_problems(value: str, *, tenant: Tenant | None) -> tuple[str | None, list[str]]:
    if not value.strip():
        return None, []
    try:
        domain = domain_normalise(value)
    except DomainError as exc:
        return None, [str(exc)]
    others = Tenant.objects.filter(custom_domain=domain)
    if tenant is not None:
        others = others.exclude(pk=tenant.pk)
    if others.exists():
        return None, [f"{domain} is already used by another clinic."]
    return domain, []


def _model_problems(tenant: Tenant, errors: dict[str, list[str]]) -> None:
    """Tenant's own field rules (time zone, lengths, email), added to `errors`."""
    try:
        # Slug and domain are checked above, with messages that name the problem.
        tenant.full_clean(exclude=["slug", "custom_domain"], validate_unique=False)
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            errors.setdefault(field, []).extend(messages)


def _profile_apply(tenant: Tenant, profile: ClinicProfile, errors: dict[str, list[str]]) -> None:
    tenant.name = profile.name.strip()
    tenant.timezone = profile.timezone.strip()
    tenant.support_phone = profile.support_phone.strip()
    tenant.support_email = profile.support_email.strip().lower()
    if not tenant.name:
        errors.setdefault("name", []).append("Enter the clinic's name.")
    domain, problems = _domain_or_problems(profile.custom_domain, tenant=tenant if tenant.pk else None)
    if problems:
        errors.setdefault("custom_domain", []).extend(problems)
    elif domain != tenant.custom_domain:
        # A new domain must be proven again; no domain, no token.
        tenant.custom_domain = domain
        tenant.custom_domain_token = domain_token_new() if domain else ""
        tenant.custom_domain_verified_at = None


def _raise_if(errors: dict[str, list[str]]) -> None:
    if errors:
        raise ClinicInvalid(errors)


def _taken(exc: IntegrityError) -> ClinicInvalid:
    # Another operator saved the same slug or domain between the check and the insert.
    text = str(exc).lower()
    field = "custom_domain" if "domain" in text else "slug"
    return ClinicInvalid({field: ["That was taken by another clinic a moment ago. Choose another."]})


# --- Writes ---------------------------------------------------------------------------------


def clinic_create(
    *,
    actor: User,
    slug: str,
    currency: str,
    profile: ClinicProfile,
    admin_email: str = "",
    request: HttpRequest | None = None,
) -> tuple[Tenant, StaffInvitation | None]:
    """Put a clinic on the platform, and invite its first clinic admin when `admin_email` is given.

    One transaction: the clinic, the invitation and their audit events
    commit together or not at all, and the invitation email is sent only on
    commit. Raises ClinicInvalid (nothing saved) for a malformed, reserved
    or taken slug or domain, an unknown time zone or currency, or a refused
    email. Audited: platform.clinic_created (platform chain) and, with an
    invitation, staff.invited (the clinic's chain).
    """
    slug = slug.strip().lower()
    errors: dict[str, list[str]] = {}
    tenant = Tenant(slug=slug, currency=currency)
    with platform_scope():
        if problems := _slug_problems(slug):
            errors["slug"] = problems
        _profile_apply(tenant, profile, errors)
        _model_problems(tenant, errors)
        _raise_if(errors)
        try:
            with transaction.atomic(durable=True):
                tenant.save(force_insert=True)
                invitation = _invite(tenant=tenant, actor=actor, email=admin_email, request=request)
                audit_record(
                    action="platform.clinic_created",
                    tenant=None,
                    actor=actor,
                    actor_role=PLATFORM_OPERATOR_ROLE,
                    target_type="tenant",
                    target_id=str(tenant.public_id),
                    request=request,
                    details={
                        "slug": tenant.slug,
                        "currency": tenant.currency,
                        "custom_domain": bool(tenant.custom_domain),
                        "invitation": str(invitation.public_id) if invitation else None,
                    },
                )
        except IntegrityError as exc:
            raise _taken(exc) from exc
    return tenant, invitation


def _invite(*, tenant: Tenant, actor: User, email: str, request: HttpRequest | None) -> StaffInvitation | None:
    """The clinic-admin invitation, inside the caller's transaction; ClinicInvalid on a refused email."""
    if not email.strip():
        return None
    try:
        with tenant_scope(tenant):
            return invitation_issue(
                tenant=tenant,
                actor=actor,
                actor_role=PLATFORM_OPERATOR_ROLE,
                email=email,
                role=Role.CLINIC_ADMIN,
                request=request,
            )
    except InvitationError as exc:
        raise ClinicInvalid({"admin_email": [str(exc)]}) from exc


def clinic_update(
    *, actor: User, tenant: Tenant, profile: ClinicProfile, request: HttpRequest | None = None
) -> list[str]:
    """Edit the clinic's profile; returns the names of the fields that changed.

    A new custom domain gets a new token and is unverified (not served)
    until checked again. Raises ClinicInvalid (nothing saved). Audited:
    platform.clinic_updated with the changed field names (never values).
    """
    errors: dict[str, list[str]] = {}
    with platform_scope():
        try:
            with transaction.atomic(durable=True):
                locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
                before = {field: getattr(locked, field) for field in EDITABLE_FIELDS}
                _profile_apply(locked, profile, errors)
                _model_problems(locked, errors)
                _raise_if(errors)
                changed = [field for field in EDITABLE_FIELDS if getattr(locked, field) != before[field]]
                if not changed:
                    return []
                extra = ["custom_domain_token", "custom_domain_verified_at"] if "custom_domain" in changed else []
                locked.save(update_fields=[*changed, *extra])
                audit_record(
                    action="platform.clinic_updated",
                    tenant=None,
                    actor=actor,
                    actor_role=PLATFORM_OPERATOR_ROLE,
                    target_type="tenant",
                    target_id=str(locked.public_id),
                    request=request,
                    details={"fields": changed},
                )
        except IntegrityError as exc:
            raise _taken(exc) from exc
    return changed


def clinic_suspend(*, actor: User, tenant: Tenant, reason: str, request: HttpRequest | None = None) -> Tenant:
    """Suspend the clinic: its hosts show "temporarily unavailable" to patients and staff alike.

    `reason` (10-200 characters) is kept on the clinic for operators; it is
    free text, so it is not put in the audit event. Raises ClinicInvalid for
    the reason and ClinicStateError when already suspended. Audited:
    platform.clinic_suspended.
    """
    reason = " ".join(reason.split())
    if not SUSPENSION_REASON_MIN <= len(reason) <= SUSPENSION_REASON_MAX:
        raise ClinicInvalid(
            {
                "reason": [
                    f"Say why, in {SUSPENSION_REASON_MIN} to {SUSPENSION_REASON_MAX} characters "
                    "(kept for operators; never shown to patients)."
                ]
            }
        )
    with platform_scope(), transaction.atomic(durable=True):
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        if locked.suspended_at is not None:
            raise ClinicStateError(f"{locked.name} is already suspended.")
        locked.suspended_at = timezone.now()
        locked.suspension_reason = reason
        locked.save(update_fields=["suspended_at", "suspension_reason"])
        audit_record(
            action="platform.clinic_suspended",
            tenant=None,
            actor=actor,
            actor_role=PLATFORM_OPERATOR_ROLE,
            target_type="tenant",
            target_id=str(locked.public_id),
            request=request,
        )
    return locked


def clinic_reactivate(*, actor: User, tenant: Tenant, request: HttpRequest | None = None) -> Tenant:
    """Lift a suspension: the clinic's hosts serve it again. Audited: platform.clinic_reactivated.

    Raises ClinicStateError when the clinic is not suspended.
    """
    with platform_scope(), transaction.atomic(durable=True):
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        if locked.suspended_at is None:
            raise ClinicStateError(f"{locked.name} is not suspended.")
        locked.suspended_at = None
        locked.suspension_reason = ""
        locked.save(update_fields=["suspended_at", "suspension_reason"])
        audit_record(
            action="platform.clinic_reactivated",
            tenant=None,
            actor=actor,
            actor_role=PLATFORM_OPERATOR_ROLE,
            target_type="tenant",
            target_id=str(locked.public_id),
            request=request,
        )
    return locked


def clinic_admin_invite(
    *, actor: User, tenant: Tenant, email: str, request: HttpRequest | None = None
) -> StaffInvitation:
    """Invite a clinic admin from the clinic's page (the first one, or a replacement invitation).

    Reuses security.invitations in one transaction with the platform event;
    the email goes out on commit. Raises ClinicInvalid ("admin_email") for a
    refused email. Audited: platform.admin_invited (platform chain) and
    staff.invited (the clinic's chain).
    """
    with platform_scope(), transaction.atomic(durable=True):
        invitation = _invite(tenant=tenant, actor=actor, email=email, request=request)
        if invitation is None:
            raise ClinicInvalid({"admin_email": ["Enter the clinic admin's email address."]})
        audit_record(
            action="platform.admin_invited",
            tenant=None,
            actor=actor,
            actor_role=PLATFORM_OPERATOR_ROLE,
            target_type="tenant",
            target_id=str(tenant.public_id),
            request=request,
            details={"invitation": str(invitation.public_id)},
        )
    return invitation
