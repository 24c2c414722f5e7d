"""A payment's timeline for staff, read from the audit trail.

Every act on a payment is already an audit event naming it (target or the
`payments` list): checkout opened, attempts, card checks, authentication,
success or failure, webhooks, refunds requested/approved/rejected/succeeded.
The timeline is those events in order, so it shows exactly what the
tamper-evident record holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from audit.actions import ACTIONS
from audit.models import AuditEvent, AuditEventSubject
from billing.models import Payment
from portal.models import Tenant
from portal.money import Money

# What staff read in a payment's timeline, by action; others fall back to the registry's description.
TIMELINE_LABELS: dict[str, str] = {
    "payment.attempted": "Card submitted to the processor",
    "payment.succeeded": "Payment succeeded and credited",
    "payment.failed": "Payment failed",
    "payment.canceled": "Payment canceled",
    "payment.flagged": "Flagged by the card-check policy",
    "payment.processor_unavailable": "Processor unreachable; nothing charged",
    "webhook.processed": "Processor notification received",
    "receipt.viewed": "Receipt viewed",
    "payment.viewed": "Payment viewed by staff",
    "refund.requested": "Refund requested",
    "refund.approved": "Refund approved",
    "refund.rejected": "Refund rejected",
    "refund.succeeded": "Refund confirmed by the processor",
    "refund.failed": "Refund failed",
}


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    label: str
    action: str
    outcome: str
    actor_role: str
    details: dict[str, object]
    amount: Money | None = None


def payment_timeline(*, tenant: Tenant, payment: Payment, limit: int = 200) -> list[TimelineEntry]:
    """The audit events naming `payment`, oldest first (staff views of it left out)."""
    subject_ids = AuditEventSubject.objects.filter(
        tenant=tenant, subject_type="payment", subject_id=str(payment.public_id)
    ).values("event_id")
    events = (
        AuditEvent.objects.filter(tenant=tenant, pk__in=subject_ids)
        .exclude(action="payment.viewed")
        .order_by("sequence")[:limit]
    )
    return [
        TimelineEntry(
            at=event.occurred_at,
            label=TIMELINE_LABELS.get(event.action, str(ACTIONS.get(event.action, event.action))),
            action=event.action,
            outcome=event.outcome,
            actor_role=event.actor_role,
            details=dict(event.details or {}),
            amount=_amount(event.details, payment.currency),
        )
        for event in events
    ]


def _amount(details: object, currency: str) -> Money | None:
    value = details.get("amount_minor") if isinstance(details, dict) else None
    return Money(value, currency) if isinstance(value, int) and not isinstance(value, bool) else None
