"""Disputes (chargebacks): follow the processor's dispute, record the money it moves, tell the clinic.

The card network opens a dispute; the processor tells us with
`charge.dispute.created`, `.updated`, `.closed`, `.funds_withdrawn` and
`.funds_reinstated` events. Each event makes us retrieve the dispute and apply
its current state (`dispute_apply`), so the order events arrive in does not
matter. Money that moved is recorded once each: a chargeback ledger entry
(the patient owes the amount again) when the funds are withdrawn, a reversal
when they are reinstated. Billing managers and clinic admins are emailed when
a dispute opens. A payment with a dispute that is open or lost cannot be
refunded (the refund services ask `dispute_blocks_refund`).
"""

from __future__ import annotations

import datetime as dt

from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.recorder import audit_record
from billing.dispute_models import OPEN_DISPUTE_STATUSES, Dispute
from billing.models import EntryKind, LedgerEntry, Payment
from billing.processor import DisputeSnapshot
from portal.models import Tenant
from portal.tenancy.context import tenant_scope
from portal.tenancy.resolution import tenant_base_url

# A dispute in one of these no longer stands in the way of a refund.
SETTLED_IN_CLINICS_FAVOUR = ("won", "warning_closed", "prevented")


def dispute_blocks_refund(payment: Payment) -> str | None:
    """Registered with the refund services: why `payment` cannot be refunded, or None."""
    dispute = (
        Dispute.objects.filter(payment=payment)
        .exclude(status__in=SETTLED_IN_CLINICS_FAVOUR)
        .order_by("-opened_at")
        .first()
    )
    if dispute is None:
        return None
    if dispute.is_open:
        return (
            f"This payment is disputed ({dispute.reason_label.lower()}); it cannot be refunded while the dispute "
            "is open. Respond to the dispute instead."
        )
    return "This payment's dispute was lost: the card network already returned the money to the cardholder."


def _due(snapshot: DisputeSnapshot) -> dt.datetime | None:
    if not snapshot.evidence_due_by:
        return None
    return dt.datetime.fromtimestamp(snapshot.evidence_due_by, tz=dt.UTC)


def _audit(dispute: Dispute, action: str, details: dict[str, object]) -> None:
    audit_record(
        action=action,
        tenant=dispute.tenant,
        actor_role="processor",
        target_type="dispute",
        target_id=str(dispute.public_id),
        details={"payments": [str(dispute.payment.public_id)], **details},
    )


def _movement_entry(dispute: Dispute, kind: str, amount_minor: int) -> bool:
    """Record a chargeback or its reversal once; True when written now."""
    if LedgerEntry.objects.filter(dispute=dispute, kind=kind).exists():
        return False
    payment = dispute.payment
    label = "Chargeback" if kind == EntryKind.CHARGEBACK else "Chargeback reversed"
    LedgerEntry.objects.create(
        tenant=dispute.tenant,
        patient_id=payment.patient_id,
        statement_id=payment.statement_id,
        kind=kind,
        amount_minor=amount_minor,
        currency=dispute.currency,
        payment=payment,
        dispute=dispute,
        memo=f"{label}, receipt {payment.receipt_number}"[:120],
    )
    return True


def dispute_apply(*, tenant: Tenant, snapshot: DisputeSnapshot) -> Dispute | None:
    """Bring our record of a dispute up to the processor's; None when its payment is not ours.

    Side effects, each once: dispute.opened (and the email to billing
    managers and clinic admins), dispute.updated on a status change,
    dispute.closed, dispute.funds_withdrawn / dispute.funds_reinstated with
    their ledger entries.
    """
    payment = Payment.objects.filter(tenant=tenant, processor_payment_intent_id=snapshot.payment_intent_id).first()
    if payment is None or not snapshot.payment_intent_id:
        return None
    with transaction.atomic():
        dispute = (
            Dispute.objects.select_for_update(of=("self",))
            .select_related("payment", "tenant")
            .filter(tenant=tenant, processor_dispute_id=snapshot.id)
            .first()
        )
        opened = dispute is None
        if dispute is None:
            try:
                with transaction.atomic():
                    dispute = Dispute.objects.create(
                        tenant=tenant,
                        payment=payment,
                        processor_dispute_id=snapshot.id,
                        amount_minor=snapshot.amount,
                        currency=snapshot.currency,
                        reason=snapshot.reason[:64],
                        status=snapshot.status[:32],
                        evidence_due_by=_due(snapshot),
                    )
            except IntegrityError:
                # Another delivery created it a moment ago: apply to that one.
                dispute = Dispute.objects.select_for_update(of=("self",)).get(processor_dispute_id=snapshot.id)
                opened = False
            else:
                _audit(dispute, "dispute.opened", {"amount_minor": snapshot.amount, "reason": snapshot.reason[:64]})
                transaction.on_commit(lambda: _notify_opened(dispute), robust=True)
        if not opened and dispute.status != snapshot.status:
            was_open = dispute.is_open
            dispute.status = snapshot.status[:32]
            dispute.evidence_due_by = _due(snapshot)
            dispute.amount_minor = snapshot.amount
            fields = ["status", "evidence_due_by", "amount_minor", "updated_at"]
            if was_open and not dispute.is_open:
                dispute.closed_at = timezone.now()
                fields.append("closed_at")
            dispute.save(update_fields=fields)
            closed = was_open and not dispute.is_open
            _audit(dispute, "dispute.closed" if closed else "dispute.updated", {"status": dispute.status})
        withdrawn = -sum(m for m in snapshot.balance_movements if m < 0)
        reinstated = sum(m for m in snapshot.balance_movements if m > 0)
        if withdrawn and _movement_entry(dispute, EntryKind.CHARGEBACK, withdrawn):
            _audit(dispute, "dispute.funds_withdrawn", {"amount_minor": withdrawn})
        if reinstated and _movement_entry(dispute, EntryKind.CHARGEBACK_REVERSAL, -reinstated):
            _audit(dispute, "dispute.funds_reinstated", {"amount_minor": reinstated})
    return dispute


def _notify_opened(dispute: Dispute) -> None:
    """Email the clinic's billing managers and admins: no patient named, only amounts and dates."""
    from security.models import Membership, Role

    tenant = dispute.tenant
    # Queued on commit: it may run after the webhook's scope has ended.
    with tenant_scope(tenant):
        recipients = sorted(
            Membership.objects.filter(
                tenant=tenant, is_active=True, user__is_active=True, role__in=[Role.BILLING_MANAGER, Role.CLINIC_ADMIN]
            ).values_list("user__email", flat=True)
        )
    if not recipients:
        return
    due = dispute.evidence_due_by.strftime("%B %d, %Y") if dispute.evidence_due_by else "the date your processor gives"
    link = tenant_base_url(tenant).rstrip("/") + f"/staff/payments/{dispute.payment.public_id}/"
    body = (
        f"A card payment of {dispute.payment.amount} (receipt {dispute.payment.receipt_number}) at {tenant.name} "
        f"was disputed by the cardholder's bank for {dispute.amount}.\n\n"
        f"Reason given: {dispute.reason_label}.\nEvidence is due by {due}.\n\n"
        f"Open the payment in the staff console: {link}\n\n"
        "Refunds of this payment are blocked while the dispute is open. Respond with evidence in your "
        "processor's dashboard before the due date."
    )
    send_mail(f"A payment was disputed at {tenant.name}", body, None, recipients)


def disputes_open_count(*, tenant: Tenant) -> int:
    return Dispute.objects.filter(tenant=tenant, status__in=OPEN_DISPUTE_STATUSES).count()
