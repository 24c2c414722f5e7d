"""The clinic's approval limits: how much each role may refund or adjust alone (Settings → Approvals).

Above a role's limit a second person with the approve permission decides
(billing.services.refunds, billing.services.adjustments). The limits live on
RefundPolicy; this module reads and changes them for the settings page, in
one transaction with the audit event (settings.approval_limits_changed,
each limit old -> new in minor units).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpRequest

from audit.recorder import audit_record
from billing.refund_models import RefundPolicy
from billing.services.refunds import refund_policy_for
from portal.models import Tenant

# The RefundPolicy fields the page edits, in the order it shows them.
LIMIT_FIELDS: tuple[str, ...] = (
    "front_desk_limit_minor",
    "billing_manager_limit_minor",
    "clinic_admin_limit_minor",
    "front_desk_adjustment_limit_minor",
    "billing_manager_adjustment_limit_minor",
    "clinic_admin_adjustment_limit_minor",
)
# A clinic may let a role act alone up to this much; beyond it a limit is no control at all.
LIMIT_MAX_MINOR = 10_000_000


class ApprovalLimitsError(ValueError):
    """A limit outside its bounds; the message is for the person at the screen."""


def approval_limits(*, tenant: Tenant) -> dict[str, int]:
    policy = refund_policy_for(tenant=tenant)
    return {name: getattr(policy, name) for name in LIMIT_FIELDS}


def approval_limits_update(
    *, tenant: Tenant, actor: Any, actor_role: str, request: HttpRequest | None, limits: dict[str, int]
) -> list[str]:
    """Save the six limits (permission settings.manage, checked by the view); the changed names.

    Raises ApprovalLimitsError for a value outside 0..LIMIT_MAX_MINOR or an
    unknown name; nothing is saved then.
    """
    unknown = set(limits) - set(LIMIT_FIELDS)
    if unknown:
        raise ApprovalLimitsError(f"unknown limits: {', '.join(sorted(unknown))}")
    for name, value in limits.items():
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= LIMIT_MAX_MINOR:
            raise ApprovalLimitsError(f"{name.replace('_', ' ')} must be from 0 to {LIMIT_MAX_MINOR} minor units")
    with transaction.atomic(durable=True):
        refund_policy_for(tenant=tenant)
        policy = RefundPolicy.objects.select_for_update().get(tenant=tenant)
        changed: list[str] = []
        details: dict[str, Any] = {}
        for name, new in limits.items():
            old = getattr(policy, name)
            if old == new:
                continue
            changed.append(name)
            details[f"{name}_old"], details[f"{name}_new"] = old, new
            setattr(policy, name, new)
        if not changed:
            return []
        policy.save(update_fields=[*changed, "updated_at"])
        audit_record(
            action="settings.approval_limits_changed",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            target_type="tenant",
            target_id=str(tenant.public_id),
            request=request,
            details={"changed": changed, **details},
        )
    return changed
