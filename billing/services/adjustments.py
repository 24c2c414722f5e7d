"""Balance adjustments and write-offs: request, approve or reject (four eyes above a limit), apply.

The flow (docs/adjustments.md):

1. `adjustment_request` records a signed adjustment of one statement under
   the statement's row lock. A reduction may not take the statement below
   zero. Within the requester's adjustment limit (RefundPolicy) it is
   applied at once; above it it waits in PENDING_APPROVAL for someone else
   with ledger.adjust_approve.
2. `adjustment_approve` / `adjustment_reject`: another person decides,
   under the adjustment's row lock, so two approvals at once apply once.
3. Applying writes one new ledger entry (kind adjustment, the adjustment's
   signed amount, LedgerEntry.adjustment unique); nothing edits an entry.

Every act is audited: adjustment.requested / approved / rejected / applied.
Notes are free text and sealed; audit details carry the reason's id only.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.recorder import audit_record
from billing.adjustment_models import (
    DEFAULT_ADJUSTMENT_REASONS,
    Adjustment,
    AdjustmentReason,
    AdjustmentStatus,
)
from billing.models import EntryKind, LedgerEntry, Statement
from billing.services.ledger import statement_balance
from billing.services.refunds import refund_policy_for
from portal.models import Tenant
from portal.money import Money

NOTE_MAX_LENGTH = 500
REASON_LABEL_MAX_LENGTH = 80


class AdjustmentError(Exception):
    """An adjustment step the rules refuse; the message is for the person at the screen."""


@dataclass(frozen=True)
class AdjustmentOutcome:
    adjustment: Adjustment
    # True when it was written to the ledger without waiting for approval.
    applied: bool


def adjustment_reasons_for(*, tenant: Tenant, active_only: bool = False) -> list[AdjustmentReason]:
    """The clinic's reason list, seeded with the defaults the first time it is asked for."""
    if not AdjustmentReason.objects.filter(tenant=tenant).exists():
        for _code, label in DEFAULT_ADJUSTMENT_REASONS:
            AdjustmentReason.objects.get_or_create(tenant=tenant, label=label)
    reasons = AdjustmentReason.objects.filter(tenant=tenant)
    if active_only:
        reasons = reasons.filter(is_active=True)
    return list(reasons.order_by("label"))


def _audit(
    action: str,
    *,
    tenant: Tenant,
    actor: object,
    actor_role: str,
    adjustment: Adjustment,
    request: object | None,
    **details: object,
) -> None:
    audit_record(
        action=action,
        tenant=tenant,
        actor=actor,
        actor_role=actor_role,
        target_type="adjustment",
        target_id=str(adjustment.public_id),
        request=request,  # type: ignore[arg-type]
        details={
            "patients": [str(adjustment.patient.public_id)],
            "statements": [str(adjustment.statement.public_id)],
            "amount_minor": adjustment.amount_minor,
            **details,
        },
    )


def _refusal(statement: Statement, amount: Money) -> str | None:
    if amount.currency != statement.currency:
        return f"Adjustments of this statement are in {statement.currency}."
    if amount.minor_units == 0:
        return "Enter an amount greater than zero."
    if amount.minor_units < 0:
        balance = statement_balance(statement=statement)
        if -amount.minor_units > balance.minor_units:
            left = Money(max(balance.minor_units, 0), statement.currency)
            return f"The statement's balance is {left}: at most that much can be taken off it."
    return None


def _apply(adjustment: Adjustment, *, tenant: Tenant, actor: object, actor_role: str, request: object | None) -> None:
    # The caller holds the statement's row lock and has checked _refusal.
    adjustment.status = AdjustmentStatus.APPLIED
    adjustment.applied_at = timezone.now()
    adjustment.save(update_fields=["status", "applied_at", "decided_by", "decided_at"])
    LedgerEntry.objects.create(
        tenant=tenant,
        patient_id=adjustment.patient_id,
        statement_id=adjustment.statement_id,
        kind=EntryKind.ADJUSTMENT,
        amount_minor=adjustment.amount_minor,
        currency=adjustment.currency,
        adjustment=adjustment,
        memo=adjustment.reason.label[:120],
    )
    _audit(
        "adjustment.applied", tenant=tenant, actor=actor, actor_role=actor_role, adjustment=adjustment, request=request
    )


def adjustment_request(
    *,
    tenant: Tenant,
    actor: object,
    actor_role: str,
    statement: Statement,
    amount: Money,
    reason: AdjustmentReason,
    note: str = "",
    request: object | None = None,
) -> AdjustmentOutcome:
    """Ask to adjust `statement` by the signed `amount` (permission ledger.adjust).

    Negative lowers what the patient owes (a write-off, a discount), positive
    raises it. Raises AdjustmentError when refused (zero, an inactive reason,
    a reduction below zero). Within the requester's adjustment limit it is
    applied at once (audited adjustment.requested, then adjustment.applied);
    above it, it waits for approval.
    """
    if reason.tenant_id != tenant.pk or not reason.is_active:
        raise AdjustmentError("Choose a reason from the list.")
    note = note.strip()
    if len(note) > NOTE_MAX_LENGTH:
        raise AdjustmentError(f"Keep the note under {NOTE_MAX_LENGTH} characters.")
    with transaction.atomic():
        locked = (
            Statement.objects.select_for_update(of=("self",))
            .select_related("patient")
            .get(pk=statement.pk, tenant=tenant)
        )
        problem = _refusal(locked, amount)
        if problem:
            raise AdjustmentError(problem)
        alone = abs(amount.minor_units) <= refund_policy_for(tenant=tenant).adjustment_limit_for(actor_role)
        adjustment = Adjustment.objects.create(
            tenant=tenant,
            patient=locked.patient,
            statement=locked,
            amount_minor=amount.minor_units,
            currency=amount.currency,
            reason=reason,
            note=note,
            status=AdjustmentStatus.PENDING_APPROVAL,
            requested_by=actor,  # type: ignore[misc]
            requested_role=actor_role,
        )
        _audit(
            "adjustment.requested",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            adjustment=adjustment,
            request=request,
            reason=str(reason.public_id),
            needs_approval=not alone,
        )
        if alone:
            _apply(adjustment, tenant=tenant, actor=actor, actor_role=actor_role, request=request)
    return AdjustmentOutcome(adjustment=adjustment, applied=alone)


def _locked_pending(adjustment: Adjustment, actor: object, own_message: str) -> Adjustment:
    locked = (
        Adjustment.objects.select_for_update(of=("self",))
        .select_related("patient", "statement", "reason")
        .get(pk=adjustment.pk)
    )
    if locked.requested_by_id == getattr(actor, "pk", None):
        raise AdjustmentError(own_message)
    if locked.status != AdjustmentStatus.PENDING_APPROVAL:
        raise AdjustmentError(
            f"This adjustment is no longer waiting for approval ({locked.get_status_display().lower()})."
        )
    return locked


def adjustment_approve(
    *, tenant: Tenant, actor: object, actor_role: str, adjustment: Adjustment, request: object | None = None
) -> Adjustment:
    """Approve and apply a pending adjustment (permission ledger.adjust_approve).

    Refused for one's own request, for one no longer pending (two approvals at
    once: the second finds it applied), and when a reduction would now take
    the statement below zero (a payment came in meanwhile).
    """
    with transaction.atomic():
        Statement.objects.select_for_update().filter(pk=adjustment.statement_id).first()
        locked = _locked_pending(adjustment, actor, "You asked for this adjustment, so someone else has to approve it.")
        problem = _refusal(locked.statement, locked.amount)
        if problem:
            raise AdjustmentError(problem)
        locked.decided_by = actor  # type: ignore[assignment]
        locked.decided_at = timezone.now()
        _audit(
            "adjustment.approved", tenant=tenant, actor=actor, actor_role=actor_role, adjustment=locked, request=request
        )
        _apply(locked, tenant=tenant, actor=actor, actor_role=actor_role, request=request)
    return locked


def adjustment_reject(
    *,
    tenant: Tenant,
    actor: object,
    actor_role: str,
    adjustment: Adjustment,
    reason: str,
    request: object | None = None,
) -> Adjustment:
    """Reject a pending adjustment with a reason (permission ledger.adjust_approve); the reason is kept."""
    reason = reason.strip()
    if not reason:
        raise AdjustmentError("Say why the adjustment is rejected; the requester sees it.")
    if len(reason) > NOTE_MAX_LENGTH:
        raise AdjustmentError(f"Keep the reason under {NOTE_MAX_LENGTH} characters.")
    with transaction.atomic():
        locked = _locked_pending(adjustment, actor, "You asked for this adjustment; someone else decides on it.")
        locked.status = AdjustmentStatus.REJECTED
        locked.decided_by = actor  # type: ignore[assignment]
        locked.decided_at = timezone.now()
        locked.rejection_reason = reason
        locked.save(update_fields=["status", "decided_by", "decided_at", "rejection_reason"])
        _audit(
            "adjustment.rejected", tenant=tenant, actor=actor, actor_role=actor_role, adjustment=locked, request=request
        )
    return locked


def adjustment_reason_add(
    *, tenant: Tenant, actor: object, actor_role: str, label: str, request: object | None = None
) -> AdjustmentReason:
    """Add a reason to the clinic's list (permission ledger.adjust_reasons). Audited."""
    label = " ".join(label.split())
    if not label:
        raise AdjustmentError("Enter the reason as staff should see it.")
    if len(label) > REASON_LABEL_MAX_LENGTH:
        raise AdjustmentError(f"Keep the reason under {REASON_LABEL_MAX_LENGTH} characters.")
    adjustment_reasons_for(tenant=tenant)  # the defaults first, so a new clinic keeps them
    if AdjustmentReason.objects.filter(tenant=tenant, label__iexact=label).exists():
        raise AdjustmentError("That reason is already on the list.")
    try:
        with transaction.atomic():
            added = AdjustmentReason.objects.create(tenant=tenant, label=label)
            audit_record(
                action="adjustment_reason.added",
                tenant=tenant,
                actor=actor,
                actor_role=actor_role,
                target_type="adjustment_reason",
                target_id=str(added.public_id),
                request=request,  # type: ignore[arg-type]
            )
    except IntegrityError:
        raise AdjustmentError("That reason is already on the list.") from None
    return added


def adjustment_reason_set_active(
    *,
    tenant: Tenant,
    actor: object,
    actor_role: str,
    reason: AdjustmentReason,
    active: bool,
    request: object | None = None,
) -> AdjustmentReason:
    """Deactivate (or bring back) a reason (permission ledger.adjust_reasons).

    A reason is never deleted: past adjustments keep naming it. A deactivated
    one leaves the form; pending adjustments that name it can still be decided.
    """
    with transaction.atomic():
        locked = AdjustmentReason.objects.select_for_update().get(pk=reason.pk, tenant=tenant)
        if locked.is_active == active:
            return locked
        if not active and not AdjustmentReason.objects.filter(tenant=tenant, is_active=True).exclude(pk=locked.pk):
            raise AdjustmentError("Keep at least one reason active.")
        locked.is_active = active
        locked.save(update_fields=["is_active"])
        audit_record(
            action="adjustment_reason.reactivated" if active else "adjustment_reason.deactivated",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            target_type="adjustment_reason",
            target_id=str(locked.public_id),
            request=request,  # type: ignore[arg-type]
        )
    return locked
