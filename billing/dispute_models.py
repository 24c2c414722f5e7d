"""Disputes (chargebacks) of card payments (billing.services.disputes).

Imported at the end of billing.models so Django registers them with the
billing app.
"""

from __future__ import annotations

import uuid

from django.db import models

from portal.money import CURRENCY_CHOICES, Money
from portal.tenancy.models import TenantOwnedModel

# Stripe's dispute statuses, by whether the dispute is still open.
OPEN_DISPUTE_STATUSES = ("warning_needs_response", "warning_under_review", "needs_response", "under_review")
DISPUTE_STATUS_LABELS = {
    "warning_needs_response": "Inquiry: respond",
    "warning_under_review": "Inquiry: under review",
    "warning_closed": "Inquiry closed",
    "needs_response": "Needs response",
    "under_review": "Under review",
    "won": "Won",
    "lost": "Lost",
    "prevented": "Prevented",
}


class Dispute(TenantOwnedModel):
    """A cardholder's dispute of one payment, as the processor last reported it.

    Its state is the processor's (retrieved when an event arrives, never
    taken from the event body). The ledger records money that moved:
    a chargeback entry when the funds are withdrawn, a reversal when they are
    reinstated, each at most once (unique per dispute and kind).
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    payment = models.ForeignKey("billing.Payment", on_delete=models.PROTECT, related_name="disputes")
    processor_dispute_id = models.CharField(max_length=255, unique=True)
    amount_minor = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    # The card network's reason as the processor names it (fraudulent, duplicate, ...).
    reason = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=32)
    evidence_due_by = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]

    def __str__(self) -> str:
        return f"Dispute {self.public_id}"

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_DISPUTE_STATUSES

    @property
    def status_label(self) -> str:
        return DISPUTE_STATUS_LABELS.get(self.status, self.status.replace("_", " ").capitalize())

    @property
    def reason_label(self) -> str:
        return self.reason.replace("_", " ").capitalize() if self.reason else "Not given"
