"""A clinic's profile and policies, as its admins set them on the settings page.

The settings page (permission settings.manage, checked by its views) writes
through these services; the processor keys are in processor_accounts and the
branding in branding. Each change is one durable transaction with one audit
event listing what changed. Values that are codes or numbers (time zone,
limits, amounts, the card-check policy) are recorded old -> new; free text
(name, address, phone, email, the statement-number hint) is recorded only as
"changed", because audit details never hold free text (audit.recorder).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from django.db import transaction
from django.http import HttpRequest

from audit.models import AuditEvent
from audit.recorder import audit_record
from billing.models import CardCheckPolicy, ProcessorAccount
from portal.models import Tenant
from security import lookup_policy
from security.models import User

# Guest look-up lockout bounds, from the one place that defines them
# (security.lookup_policy, which also clamps stored values on every look-up).
LOOKUP_STATEMENT_FAILURES = (lookup_policy.STATEMENT_FAILURE_LIMIT_MIN, lookup_policy.STATEMENT_FAILURE_LIMIT_MAX)
LOOKUP_LOCKOUT_MINUTES = (lookup_policy.LOCKOUT_MINUTES_MIN, lookup_policy.LOCKOUT_MINUTES_MAX)
LOOKUP_IP_FAILURES = (lookup_policy.IP_FAILURE_LIMIT_MIN, lookup_policy.IP_FAILURE_LIMIT_MAX)
# The largest minimum payment a clinic may ask for, in minor units.
MINIMUM_PAYMENT_MAX_MINOR = 100_000


class SettingsError(ValueError):
    """A value the rules refuse (forms check first; this guards other callers)."""


@dataclass(frozen=True)
class ClinicProfile:
    name: str
    timezone: str
    support_phone: str
    support_email: str
    address_line1: str
    address_line2: str
    city: str
    state: str
    postal_code: str
    statement_number_hint: str


@dataclass(frozen=True)
class ClinicPolicies:
    minimum_payment_minor: int
    lookup_statement_failure_limit: int
    lookup_lockout_minutes: int
    lookup_ip_failure_limit: int
    card_check_policy: str


# Profile fields whose values go into the audit event (codes, not free text).
_PROFILE_VALUE_FIELDS = frozenset({"timezone"})


def clinic_profile(*, tenant: Tenant) -> ClinicProfile:
    return ClinicProfile(**{name: getattr(tenant, name) for name in ClinicProfile.__dataclass_fields__})


def clinic_policies(*, tenant: Tenant) -> ClinicPolicies:
    account = ProcessorAccount.objects.filter(tenant=tenant).first()
    return ClinicPolicies(
        minimum_payment_minor=tenant.minimum_payment_minor,
        lookup_statement_failure_limit=tenant.lookup_statement_failure_limit,
        lookup_lockout_minutes=tenant.lookup_lockout_minutes,
        lookup_ip_failure_limit=tenant.lookup_ip_failure_limit,
        card_check_policy=account.card_check_policy if account is not None else CardCheckPolicy.FLAG,
    )


def _record(
    *, action: str, tenant: Tenant, actor: Any, actor_role: str, request: HttpRequest | None, details: dict[str, Any]
) -> None:
    audit_record(
        action=action,
        tenant=tenant,
        actor=actor,
        actor_role=actor_role,
        target_type="tenant",
        target_id=str(tenant.public_id),
        request=request,
        details=details,
    )


def clinic_profile_update(
    *, tenant: Tenant, actor: Any, actor_role: str, request: HttpRequest | None, profile: ClinicProfile
) -> list[str]:
    """Save the clinic's name, time zone, support contacts, address and statement-number hint.

    Returns the changed field names (empty: nothing changed, no event).
    Audit: settings.profile_changed.
    """
    if not profile.name.strip():
        raise SettingsError("the clinic's name is required")
    with transaction.atomic(durable=True):
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        changed: list[str] = []
        details: dict[str, Any] = {}
        for name, new in asdict(profile).items():
            old = getattr(locked, name)
            if old == new:
                continue
            changed.append(name)
            if name in _PROFILE_VALUE_FIELDS:
                details[f"{name}_old"], details[f"{name}_new"] = old, new
            setattr(locked, name, new)
        if not changed:
            return []
        locked.full_clean(exclude=[f.name for f in Tenant._meta.fields if f.name not in changed])
        locked.save(update_fields=changed)
        _record(
            action="settings.profile_changed",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            request=request,
            details={"changed": changed, **details},
        )
    tenant.refresh_from_db(fields=changed)
    return changed


def _check_bounds(name: str, value: int, bounds: tuple[int, int]) -> None:
    if not bounds[0] <= value <= bounds[1]:
        raise SettingsError(f"{name} must be between {bounds[0]} and {bounds[1]}")


def clinic_policies_update(
    *, tenant: Tenant, actor: Any, actor_role: str, request: HttpRequest | None, policies: ClinicPolicies
) -> list[str]:
    """Save the minimum payment, the look-up lockout limits and the card-check policy.

    Raises SettingsError for a value outside its bounds (nothing is saved).
    Returns the changed names. Audit: settings.policies_changed, every value old -> new.
    """
    _check_bounds("minimum payment", policies.minimum_payment_minor, (1, MINIMUM_PAYMENT_MAX_MINOR))
    _check_bounds("statement failure limit", policies.lookup_statement_failure_limit, LOOKUP_STATEMENT_FAILURES)
    _check_bounds("lockout minutes", policies.lookup_lockout_minutes, LOOKUP_LOCKOUT_MINUTES)
    _check_bounds("IP failure limit", policies.lookup_ip_failure_limit, LOOKUP_IP_FAILURES)
    if policies.card_check_policy not in CardCheckPolicy.values:
        raise SettingsError(f"unknown card-check policy {policies.card_check_policy!r}")
    with transaction.atomic(durable=True):
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        account = ProcessorAccount.objects.select_for_update().filter(tenant=tenant).first()
        changed: list[str] = []
        details: dict[str, Any] = {}
        tenant_fields: list[str] = []
        for name, new in asdict(policies).items():
            target: Any = account if name == "card_check_policy" else locked
            if target is None:
                if new != CardCheckPolicy.FLAG:
                    raise SettingsError("connect the processor before choosing a card-check policy")
                continue
            old = getattr(target, name)
            if old == new:
                continue
            changed.append(name)
            details[f"{name}_old"], details[f"{name}_new"] = old, new
            setattr(target, name, new)
            if target is locked:
                tenant_fields.append(name)
        if not changed:
            return []
        if tenant_fields:
            locked.save(update_fields=tenant_fields)
        if account is not None and "card_check_policy" in changed:
            account.save(update_fields=["card_check_policy", "updated_at"])
        _record(
            action="settings.policies_changed",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            request=request,
            details={"changed": changed, **details},
        )
    if tenant_fields:
        tenant.refresh_from_db(fields=tenant_fields)
    return changed


# --- The page's "recent changes" ------------------------------------------------------------

SETTINGS_ACTION_PREFIX = "settings."


@dataclass(frozen=True)
class SettingsChange:
    """One settings change from the audit trail, as the page lists it."""

    event: AuditEvent
    actor: str  # the actor's email, or "" when the account is gone

    @property
    def summary(self) -> list[str]:
        """ "field: old → new" for recorded values, "field changed" for the rest."""
        details = self.event.details or {}
        lines: list[str] = []
        for key in details:
            if key.endswith("_new"):
                name = key[: -len("_new")]
                old = details.get(name + "_old")
                label = name.replace("_minor", "_in_minor_units").replace("_", " ")
                lines.append(f"{label}: {'none' if old is None else old} → {details[key]}")
        recorded = {key[: -len("_new")] for key in details if key.endswith("_new")}
        for name in details.get("changed") or []:
            if name not in recorded and name not in details:
                lines.append(f"{name.replace('_', ' ')} changed")
        for key in ("secret_key", "webhook_secret", "logo"):
            if key in details and isinstance(details[key], str):
                lines.append(f"{key.replace('_', ' ')} {details[key]}")
        return lines


def settings_recent_changes(*, tenant: Tenant, limit: int = 10) -> list[SettingsChange]:
    """The clinic's latest settings changes from its audit trail, newest first. Two queries."""
    events = list(
        AuditEvent.objects.filter(tenant=tenant, action__startswith=SETTINGS_ACTION_PREFIX).order_by("-sequence")[
            :limit
        ]
    )
    emails = dict(
        User.objects.filter(public_id__in={e.actor_user_id for e in events if e.actor_user_id}).values_list(
            "public_id", "email"
        )
    )
    return [SettingsChange(event=e, actor=emails.get(e.actor_user_id, "") if e.actor_user_id else "") for e in events]
