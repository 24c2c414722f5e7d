"""Balance adjustments and write-offs, and the clinic's list of adjustment reasons.

Imported at the end of billing.models so Django registers them with the
billing app. Rules live in billing.services.adjustments.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from portal.money import CURRENCY_CHOICES, Money
from portal.tenancy.models import TenantOwnedModel
from security.crypto.fields import EncryptedTextField
from security.crypto.models import KeyPurpose

# Seeded for every clinic on first use; clinic admins add their own and
# deactivate any of them. (code, label)
DEFAULT_ADJUSTMENT_REASONS: tuple[tuple[str, str], ...] = (
    ("small_balance_write_off", "Small-balance write-off"),
    ("charity_care", "Charity care"),
    ("insurance_adjustment", "Insurance adjustment"),
    ("billing_error", "Billing error"),
    ("prompt_pay_discount", "Prompt-pay discount"),
    ("other", "Other (see note)"),
)


class AdjustmentReason(TenantOwnedModel):
    """One entry of a clinic's adjustment reason list.

    Never deleted once an adjustment names it (PROTECT); a reason no longer
    wanted is deactivated: it stays on past adjustments and leaves the form.
    The label is the clinic's own wording, not PHI.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    label = models.CharField(max_length=80)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["label"]
        constraints = [models.UniqueConstraint(fields=["tenant", "label"], name="adjustment_reason_label_unique")]

    def __str__(self) -> str:
        return self.label


class AdjustmentStatus(models.TextChoices):
    # Above the requester's limit: waiting for a second person.
    PENDING_APPROVAL = "pending_approval", "Waiting for approval"
    REJECTED = "rejected", "Rejected"
    # The ledger entry is written.
    APPLIED = "applied", "Applied"


class Adjustment(TenantOwnedModel):
    """A signed correction of one statement's balance, recorded as a new ledger entry.

    Invariants: amount_minor != 0, signed like the ledger (negative lowers what
    the patient owes: a write-off or discount; positive raises it); the ledger
    entry is written once, when the adjustment is applied (LedgerEntry.adjustment
    is unique); nothing edits an existing entry. The note and the rejection
    reason are free text staff type, so they are sealed like PHI.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    patient = models.ForeignKey("billing.Patient", on_delete=models.PROTECT, related_name="adjustments")
    statement = models.ForeignKey("billing.Statement", on_delete=models.PROTECT, related_name="adjustments")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    reason = models.ForeignKey(AdjustmentReason, on_delete=models.PROTECT, related_name="adjustments")
    note = EncryptedTextField(max_length=500, blank=True, purpose=KeyPurpose.PHI)
    status = models.CharField(max_length=20, choices=AdjustmentStatus.choices)
    requested_by = models.ForeignKey("security.User", on_delete=models.PROTECT, related_name="+")
    requested_role = models.CharField(max_length=32)
    requested_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Who approved or rejected it (None when the requester could adjust alone).
    decided_by = models.ForeignKey("security.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = EncryptedTextField(max_length=500, blank=True, purpose=KeyPurpose.PHI)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        constraints = [models.CheckConstraint(condition=~Q(amount_minor=0), name="adjustment_amount_not_zero")]

    def __str__(self) -> str:
        return f"Adjustment {self.public_id}"

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @property
    def magnitude(self) -> Money:
        return Money(abs(self.amount_minor), self.currency)

    @property
    def lowers_balance(self) -> bool:
        return self.amount_minor < 0
