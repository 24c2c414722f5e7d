"""Refunds and the clinic's refund approval policy (billing.services.refunds).

Imported at the end of billing.models so Django registers them with the
billing app.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from portal.money import CURRENCY_CHOICES, Money
from portal.tenancy.models import TenantOwnedModel
from security.crypto.fields import EncryptedTextField
from security.crypto.models import KeyPurpose


class RefundReason(models.TextChoices):
    REQUESTED_BY_PATIENT = "requested_by_patient", "Requested by the patient"
    OVERPAYMENT = "overpayment", "Overpayment"
    DUPLICATE = "duplicate", "Duplicate payment"
    BILLING_ERROR = "billing_error", "Billing error"
    INSURANCE_PAID = "insurance_paid", "Insurance paid the balance"
    SERVICE_NOT_RENDERED = "service_not_rendered", "Service not rendered"
    OTHER = "other", "Other (see note)"


class RefundStatus(models.TextChoices):
    # Waiting for a second person (above the requester's limit).
    PENDING_APPROVAL = "pending_approval", "Waiting for approval"
    REJECTED = "rejected", "Rejected"
    # Approved (or within the requester's limit); sent, or about to be sent, to the processor.
    PROCESSING = "processing", "Processing"
    SUCCEEDED = "succeeded", "Refunded"
    FAILED = "failed", "Failed"


# Refunds whose amount is spoken for: they count against what a payment can still refund.
OPEN_REFUND_STATUSES = (RefundStatus.PENDING_APPROVAL, RefundStatus.PROCESSING, RefundStatus.SUCCEEDED)


class Refund(TenantOwnedModel):
    """A refund of part or all of one succeeded payment.

    Invariants: 0 < amount_minor; the sum of a payment's open refunds never
    exceeds its captured amount (checked under the payment's row lock); the
    ledger entry is written once, only when the processor reports success
    (LedgerEntry.refund is unique for refund entries). The note and the
    rejection reason are free text staff type, so they are sealed like PHI.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    payment = models.ForeignKey("billing.Payment", on_delete=models.PROTECT, related_name="refunds")
    amount_minor = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    reason = models.CharField(max_length=32, choices=RefundReason.choices)
    note = EncryptedTextField(max_length=500, blank=True, purpose=KeyPurpose.PHI)
    status = models.CharField(max_length=20, choices=RefundStatus.choices)
    requested_by = models.ForeignKey("security.User", on_delete=models.PROTECT, related_name="+")
    requested_role = models.CharField(max_length=32)
    requested_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Who approved or rejected it (None when the requester could refund alone).
    decided_by = models.ForeignKey("security.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = EncryptedTextField(max_length=500, blank=True, purpose=KeyPurpose.PHI)
    processor_refund_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    # Set when the processor could not be reached; cleared when it answers.
    processor_unreachable_at = models.DateTimeField(null=True, blank=True)
    failure_code = models.CharField(max_length=64, blank=True)
    failure_message = models.CharField(max_length=255, blank=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    receipt_number = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="refund_amount_positive"),
            models.UniqueConstraint(
                fields=["tenant", "receipt_number"],
                condition=~Q(receipt_number=""),
                name="refund_receipt_number_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"Refund {self.public_id}"

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @property
    def idempotency_key(self) -> str:
        # Derived from our refund id: a retry after a timeout sends the same key,
        # so the processor refunds once however often we ask.
        return f"settle-refund-{self.public_id}"


class RefundPolicy(TenantOwnedModel):
    """Who may refund (and adjust a balance) alone, up to which amount; above it a second person approves.

    One row per clinic, created with the defaults on first use. A limit of 0
    means every refund by that role waits for approval. The requester never
    approves their own request, whatever the limits.
    """

    front_desk_limit_minor = models.PositiveIntegerField(default=0)
    billing_manager_limit_minor = models.PositiveIntegerField(default=50_000)
    clinic_admin_limit_minor = models.PositiveIntegerField(default=50_000)
    # Adjustments and write-offs (billing.services.adjustments), by their size
    # whatever their sign: the same four-eyes rule as refunds.
    front_desk_adjustment_limit_minor = models.PositiveIntegerField(default=0)
    billing_manager_adjustment_limit_minor = models.PositiveIntegerField(default=5_000)
    clinic_admin_adjustment_limit_minor = models.PositiveIntegerField(default=50_000)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant"], name="refund_policy_one_per_tenant")]

    def __str__(self) -> str:
        return f"Refund policy of tenant {self.tenant_id}"

    def limit_for(self, role: str) -> int:
        """The largest refund `role` may make without a second person, in minor units."""
        return {
            "front_desk": self.front_desk_limit_minor,
            "billing_manager": self.billing_manager_limit_minor,
            "clinic_admin": self.clinic_admin_limit_minor,
        }.get(role, 0)

    def adjustment_limit_for(self, role: str) -> int:
        """The largest adjustment (either sign) `role` may make without a second person, in minor units."""
        return {
            "front_desk": self.front_desk_adjustment_limit_minor,
            "billing_manager": self.billing_manager_adjustment_limit_minor,
            "clinic_admin": self.clinic_admin_adjustment_limit_minor,
        }.get(role, 0)
