"""Refunds: request, approve or reject (four eyes above a limit), send, apply.

The flow (docs/refunds.md):

1. `refund_request` records a refund of a succeeded payment under the
   payment's row lock, refusing more than is left to refund. Within the
   requester's limit (RefundPolicy) it goes straight to PROCESSING; above it
   it waits in PENDING_APPROVAL for someone else with refunds.approve.
2. `refund_approve` / `refund_reject`: another person decides, under the
   refund's row lock, so two approvals at once approve once.
3. `refund_submit` calls the processor with an idempotency key derived from
   our refund id, outside any lock (a retry or a racing call sends the same
   key, so the processor refunds once).
4. `refund_apply` brings our refund up to the processor's current state. The
   ledger entry is written only when the processor says succeeded, once
   (LedgerEntry.refund unique): from the synchronous answer or from the
   refund webhook, whichever comes first.

Every act is audited: refund.requested / approved / rejected / succeeded /
failed. Notes are free text and sealed; audit details carry codes only.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from audit.models import Outcome
from audit.recorder import audit_record
from billing.models import EntryKind, LedgerEntry, Payment, PaymentStatus
from billing.processor import ProcessorError, ProcessorUnavailable, RefundSnapshot, get_processor
from billing.refund_models import OPEN_REFUND_STATUSES, Refund, RefundPolicy, RefundReason, RefundStatus
from portal.models import Tenant
from portal.money import Money
from portal.tenancy.context import tenant_scope

logger = logging.getLogger(__name__)

NOTE_MAX_LENGTH = 500


class RefundError(Exception):
    """A refund step the rules refuse; the message is for the person at the screen."""


@dataclass(frozen=True)
class RefundOutcome:
    refund: Refund
    # True when it went to the processor without waiting for approval.
    sent: bool


def refund_policy_for(*, tenant: Tenant) -> RefundPolicy:
    """The clinic's refund policy, created with the defaults on first use."""
    policy, _ = RefundPolicy.objects.get_or_create(tenant=tenant)
    return policy


def payment_refundable(*, payment: Payment, excluding: Refund | None = None) -> Money:
    """What is left to refund: captured amount less every refund not rejected or failed.

    `excluding` leaves one refund out of the count (the one being approved).
    """
    if payment.status != PaymentStatus.SUCCEEDED:
        return Money(0, payment.currency)
    open_refunds = Refund.objects.filter(payment=payment, status__in=OPEN_REFUND_STATUSES)
    if excluding is not None:
        open_refunds = open_refunds.exclude(pk=excluding.pk)
    spoken_for = open_refunds.aggregate(total=Sum("amount_minor"))["total"] or 0
    return Money(max(payment.amount_minor - int(spoken_for), 0), payment.currency)


RefundBlocker = Callable[[Payment], "str | None"]

# Checks other parts register (an open dispute, say): each returns a message
# when the payment must not be refunded now, else None.
_BLOCKERS: list[RefundBlocker] = []


def register_refund_blocker(check: RefundBlocker) -> None:
    if check not in _BLOCKERS:
        _BLOCKERS.append(check)


def _refusal(payment: Payment, amount: Money, *, excluding: Refund | None = None) -> str | None:
    if payment.status == PaymentStatus.REQUIRES_CAPTURE:
        return "This payment is only authorised, not captured: there is nothing to refund yet."
    if payment.status != PaymentStatus.SUCCEEDED:
        return "Only a payment that succeeded can be refunded."
    for check in _BLOCKERS:
        message = check(payment)
        if message:
            return str(message)
    if amount.currency != payment.currency:
        return f"A refund of this payment is in {payment.currency}."
    if amount.minor_units <= 0:
        return "Enter an amount greater than zero."
    left = payment_refundable(payment=payment, excluding=excluding)
    if amount.minor_units > left.minor_units:
        return f"At most {left} of this payment can still be refunded."
    return None


def _new_receipt_number() -> str:
    token = secrets.token_hex(6).upper()
    return f"RF-{token[:4]}-{token[4:8]}-{token[8:]}"


def refund_request(
    *,
    tenant: Tenant,
    actor: object,
    actor_role: str,
    payment: Payment,
    amount: Money,
    reason: str,
    note: str = "",
    request: object | None = None,
) -> RefundOutcome:
    """Ask to refund `amount` of `payment` (permission refunds.request).

    Raises RefundError with a message when the payment cannot be refunded
    (not captured, disputed, more than is left). Within the requester's
    limit the refund is sent to the processor after commit; above it, it
    waits for approval. Audited as refund.requested.
    """
    if reason not in RefundReason.values:
        raise RefundError("Choose a reason for the refund.")
    if len(note) > NOTE_MAX_LENGTH:
        raise RefundError(f"Keep the note under {NOTE_MAX_LENGTH} characters.")
    with transaction.atomic():
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        problem = _refusal(locked, amount)
        if problem:
            raise RefundError(problem)
        alone = amount.minor_units <= refund_policy_for(tenant=tenant).limit_for(actor_role)
        refund = Refund.objects.create(
            tenant=tenant,
            payment=locked,
            amount_minor=amount.minor_units,
            currency=amount.currency,
            reason=reason,
            note=note.strip(),
            status=RefundStatus.PROCESSING if alone else RefundStatus.PENDING_APPROVAL,
            requested_by=actor,  # type: ignore[misc]
            requested_role=actor_role,
        )
        audit_record(
            action="refund.requested",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            target_type="refund",
            target_id=str(refund.public_id),
            request=request,  # type: ignore[arg-type]
            details={
                "payments": [str(locked.public_id)],
                "amount_minor": amount.minor_units,
                "currency": amount.currency,
                "reason": reason,
                "needs_approval": not alone,
            },
        )
        if alone:
            transaction.on_commit(lambda: refund_submit(tenant=tenant, refund_id=refund.pk), robust=True)
    return RefundOutcome(refund=refund, sent=alone)


def refund_approve(
    *, tenant: Tenant, actor: object, actor_role: str, refund: Refund, request: object | None = None
) -> Refund:
    """Approve a pending refund (permission refunds.approve); it is sent after commit.

    Refused for one's own request, for a refund no longer pending (two
    approvals at once: the second finds it processing), and when the payment
    can no longer be refunded by that much (a dispute opened meanwhile).
    """
    with transaction.atomic():
        locked = Refund.objects.select_for_update(of=("self",)).select_related("payment").get(pk=refund.pk)
        if locked.requested_by_id == getattr(actor, "pk", None):
            raise RefundError("You asked for this refund, so someone else has to approve it.")
        if locked.status != RefundStatus.PENDING_APPROVAL:
            raise RefundError(f"This refund is no longer waiting for approval ({locked.get_status_display().lower()}).")
        payment = Payment.objects.select_for_update().get(pk=locked.payment_id)
        problem = _refusal(payment, locked.amount, excluding=locked)
        if problem:
            raise RefundError(problem)
        locked.status = RefundStatus.PROCESSING
        locked.decided_by = actor  # type: ignore[assignment]
        locked.decided_at = timezone.now()
        locked.save(update_fields=["status", "decided_by", "decided_at"])
        audit_record(
            action="refund.approved",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            target_type="refund",
            target_id=str(locked.public_id),
            request=request,  # type: ignore[arg-type]
            details={"payments": [str(payment.public_id)], "amount_minor": locked.amount_minor},
        )
        transaction.on_commit(lambda: refund_submit(tenant=tenant, refund_id=locked.pk), robust=True)
    return locked


def refund_reject(
    *, tenant: Tenant, actor: object, actor_role: str, refund: Refund, reason: str, request: object | None = None
) -> Refund:
    """Reject a pending refund with a reason (permission refunds.approve); the reason is kept."""
    reason = reason.strip()
    if not reason:
        raise RefundError("Say why the refund is rejected; the requester sees it.")
    if len(reason) > NOTE_MAX_LENGTH:
        raise RefundError(f"Keep the reason under {NOTE_MAX_LENGTH} characters.")
    with transaction.atomic():
        locked = Refund.objects.select_for_update(of=("self",)).select_related("payment").get(pk=refund.pk)
        if locked.requested_by_id == getattr(actor, "pk", None):
            raise RefundError("You asked for this refund; someone else decides on it.")
        if locked.status != RefundStatus.PENDING_APPROVAL:
            raise RefundError(f"This refund is no longer waiting for approval ({locked.get_status_display().lower()}).")
        locked.status = RefundStatus.REJECTED
        locked.decided_by = actor  # type: ignore[assignment]
        locked.decided_at = timezone.now()
        locked.rejection_reason = reason
        locked.save(update_fields=["status", "decided_by", "decided_at", "rejection_reason"])
        audit_record(
            action="refund.rejected",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            target_type="refund",
            target_id=str(locked.public_id),
            request=request,  # type: ignore[arg-type]
            details={"payments": [str(locked.payment.public_id)], "amount_minor": locked.amount_minor},
        )
    return locked


def refund_submit(*, tenant: Tenant, refund_id: int) -> Refund:
    """Send a PROCESSING refund to the processor and apply its answer. Safe to repeat.

    Runs in `tenant`'s scope itself: it is queued on commit, and may run
    after the request's scope has ended.

    No lock is held during the call: the idempotency key makes a repeated or
    concurrent call refund once. Unreachable: the refund stays PROCESSING
    with processor_unreachable_at set, for the sweep or a person to retry.
    Refused by the processor: FAILED with its reason.
    """
    with tenant_scope(tenant):
        return _refund_submit(Refund.objects.select_related("payment", "tenant").get(pk=refund_id))


def _refund_submit(refund: Refund) -> Refund:
    if refund.status != RefundStatus.PROCESSING:
        return refund
    processor = get_processor(refund.tenant)
    try:
        snapshot = processor.create_refund(
            payment_intent_id=refund.payment.processor_payment_intent_id or "",
            amount=refund.amount_minor,
            metadata={
                "settle_tenant": str(refund.tenant.public_id),
                "settle_refund": str(refund.public_id),
                "settle_payment": str(refund.payment.public_id),
            },
            idempotency_key=refund.idempotency_key,
        )
    except ProcessorUnavailable:
        Refund.objects.filter(pk=refund.pk, status=RefundStatus.PROCESSING).update(
            processor_unreachable_at=timezone.now()
        )
        refund.refresh_from_db()
        return refund
    except ProcessorError as error:
        return _refund_fail(refund_id=refund.pk, code="processor_refused", message=str(error)[:255])
    return refund_apply(refund_id=refund.pk, snapshot=snapshot, source="refund")


def _mark_failed(refund: Refund, *, code: str, message: str, source: str, fields: list[str]) -> Refund:
    """Record a PROCESSING refund as failed (caller holds its row lock); audited as refund.failed."""
    refund.status = RefundStatus.FAILED
    refund.failure_code = code[:64]
    refund.failure_message = message[:255]
    refund.save(update_fields=[*fields, "status", "failure_code", "failure_message"])
    audit_record(
        action="refund.failed",
        tenant=refund.tenant,
        outcome=Outcome.FAILURE,
        actor_role="processor",
        target_type="refund",
        target_id=str(refund.public_id),
        details={"payments": [str(refund.payment.public_id)], "code": code[:64], "source": source},
    )
    return refund


def _refund_fail(*, refund_id: int, code: str, message: str) -> Refund:
    with transaction.atomic():
        refund = Refund.objects.select_for_update(of=("self",)).select_related("payment", "tenant").get(pk=refund_id)
        if refund.status != RefundStatus.PROCESSING:
            return refund
        return _mark_failed(refund, code=code, message=message, source="refund", fields=[])


FAILURE_MESSAGES = {
    "expired_or_canceled_card": "The card was expired or canceled; the bank could not take the refund back.",
    "lost_or_stolen_card": "The card was reported lost or stolen.",
    "insufficient_funds": "The clinic's processor balance was too low to refund.",
}


def refund_apply(*, refund_id: int, snapshot: RefundSnapshot, source: str) -> Refund:
    """Bring our refund up to the processor's state; write the ledger entry once on success.

    `source` names who told us (refund, webhook, sweep). Idempotent: the row
    lock and the ledger's unique refund entry make a racing webhook and
    synchronous answer record one entry.
    """
    with transaction.atomic():
        refund = Refund.objects.select_for_update(of=("self",)).select_related("payment", "tenant").get(pk=refund_id)
        if snapshot.metadata.get("settle_refund") not in (None, str(refund.public_id)):
            raise RefundError("the processor's refund belongs to another refund")
        fields = []
        if refund.processor_refund_id is None:
            refund.processor_refund_id = snapshot.id
            fields.append("processor_refund_id")
        if refund.processor_unreachable_at is not None:
            refund.processor_unreachable_at = None
            fields.append("processor_unreachable_at")
        if snapshot.status == "succeeded" and refund.status == RefundStatus.PROCESSING:
            refund.status = RefundStatus.SUCCEEDED
            refund.succeeded_at = timezone.now()
            refund.receipt_number = _new_receipt_number()
            fields += ["status", "succeeded_at", "receipt_number"]
            refund.save(update_fields=fields)
            LedgerEntry.objects.create(
                tenant=refund.tenant,
                patient_id=refund.payment.patient_id,
                statement_id=refund.payment.statement_id,
                kind=EntryKind.REFUND,
                amount_minor=refund.amount_minor,
                currency=refund.currency,
                payment=refund.payment,
                refund=refund,
                memo=f"Card refund, receipt {refund.receipt_number}",
            )
            audit_record(
                action="refund.succeeded",
                tenant=refund.tenant,
                actor_role="processor",
                target_type="refund",
                target_id=str(refund.public_id),
                details={
                    "payments": [str(refund.payment.public_id)],
                    "amount_minor": refund.amount_minor,
                    "source": source,
                },
            )
            return refund
        if snapshot.status in ("failed", "canceled") and refund.status == RefundStatus.PROCESSING:
            code = snapshot.failure_reason or snapshot.status
            message = FAILURE_MESSAGES.get(code, "The processor could not make this refund.")
            return _mark_failed(refund, code=code, message=message, source=source, fields=fields)
        if fields:
            refund.save(update_fields=fields)
    return refund


def refund_for_processor_object(*, tenant: Tenant, snapshot: RefundSnapshot) -> Refund | None:
    """Our refund behind a processor refund: by its id, else by the metadata we sent (this clinic only)."""
    found = Refund.objects.filter(tenant=tenant, processor_refund_id=snapshot.id).first()
    if found is not None:
        return found
    if snapshot.metadata.get("settle_tenant") != str(tenant.public_id):
        return None
    try:
        public_id = UUID(snapshot.metadata.get("settle_refund", ""))
    except ValueError:
        return None
    return Refund.objects.filter(tenant=tenant, public_id=public_id).first()


REFUND_STUCK_AFTER = timedelta(minutes=10)


def refunds_settle_stuck_for_tenant(*, tenant: Tenant, older_than: timedelta = REFUND_STUCK_AFTER) -> int:
    """The fallback for a refund whose answer or webhook never came; returns how many were checked.

    A PROCESSING refund the processor acknowledged is retrieved and applied;
    one it never acknowledged (unreachable) is sent again with the same
    idempotency key, so it is refunded at most once.
    """
    checked = 0
    with tenant_scope(tenant):
        stuck = list(
            Refund.objects.filter(status=RefundStatus.PROCESSING, requested_at__lt=timezone.now() - older_than)
            .order_by("requested_at")
            .values_list("pk", "processor_refund_id")[:500]
        )
        for refund_id, processor_refund_id in stuck:
            checked += 1
            try:
                if processor_refund_id:
                    snapshot = get_processor(tenant).retrieve_refund(processor_refund_id)
                    refund_apply(refund_id=refund_id, snapshot=snapshot, source="sweep")
                else:
                    refund_submit(tenant=tenant, refund_id=refund_id)
            except ProcessorError:
                logger.warning("refund sweep could not reach the processor", extra={"refund": refund_id})
    return checked
