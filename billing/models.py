"""Patients, statements, the ledger, checkouts, payments and processor events.

Money is integer minor units plus a currency code; never floats.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.validators import EmailValidator
from django.db import models
from django.db.models import Q

from portal.money import CURRENCY_CHOICES, Money
from portal.tenancy.models import TenantOwnedModel
from security.crypto.fields import BlindIndexField, EncryptedDateField, EncryptedTextField
from security.crypto.models import KeyPurpose
from security.crypto.projection import EncryptedProjectionField, with_derived_fields


class Patient(TenantOwnedModel):
    """A clinic's patient. Every identifying field is PHI, encrypted at rest
    (security.crypto.fields), and found through keyed blind indexes."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # The clinic's own account / MRN reference.
    account_number = EncryptedTextField(max_length=40)
    first_name = EncryptedTextField(max_length=100)
    last_name = EncryptedTextField(max_length=100)
    date_of_birth = EncryptedDateField()
    email = EncryptedTextField(max_length=254, blank=True, validators=[EmailValidator()])
    phone = EncryptedTextField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Blind indexes (exact look-ups; normalised: case, spaces, date and phone formats).
    account_number_index = BlindIndexField(sources=("account_number",), normalizers=("exact",))
    name_dob_index = BlindIndexField(sources=("last_name", "date_of_birth"), normalizers=("text", "date"))
    last_name_index = BlindIndexField(sources=("last_name",), normalizers=("text",))
    email_index = BlindIndexField(sources=("email",), normalizers=("email",))
    phone_index = BlindIndexField(sources=("phone",), normalizers=("phone",))
    # What front desks also type (billing.services.patient_search): a first name,
    # with or without the date of birth, or the date of birth alone.
    first_name_index = BlindIndexField(sources=("first_name",), normalizers=("text",))
    first_name_dob_index = BlindIndexField(sources=("first_name", "date_of_birth"), normalizers=("text", "date"))
    date_of_birth_index = BlindIndexField(sources=("date_of_birth",), normalizers=("date",))
    # What patient lists show, sealed as one value: a list opens one ciphertext
    # per row instead of five (docs/decisions/0005). Rewritten on every save.
    listing = EncryptedProjectionField(sources=("first_name", "last_name", "date_of_birth", "account_number", "phone"))

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "account_number_index"],
                condition=~Q(account_number_index=""),
                name="patient_account_unique_per_tenant",
            )
        ]

    def __str__(self) -> str:
        return f"Patient {self.public_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # A partial save of a source column also rewrites the blind indexes and
        # the listing computed from it.
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = with_derived_fields(type(self), kwargs["update_fields"])
        super().save(*args, **kwargs)

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    @property
    def listed_name(self) -> str:
        """display_name as last saved, from the listing projection (one decryption, for lists)."""
        listing = self.listing
        return f"{listing.first_name} {listing.last_name}".strip()


class Statement(TenantOwnedModel):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="statements")
    # As printed on the statement (upper case), e.g. "DC-100234". An identifier
    # printed on paper: encrypted, and looked up through `number_index`.
    number = EncryptedTextField(max_length=32)
    # Keyed blind index of `number` normalised for look-ups: no spaces, dashes,
    # slashes or dots (security.crypto.normalize.normalize_statement_number).
    number_index = BlindIndexField(sources=("number",), normalizers=("statement_number",))
    statement_date = models.DateField()
    due_date = models.DateField()
    # What the statement said was due when issued; the live balance is the ledger's.
    amount_due_minor = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    # Description of the care billed: PHI.
    summary = EncryptedTextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "number_index"],
                condition=~Q(number_index=""),
                name="statement_number_unique_per_tenant",
            )
        ]

    def __str__(self) -> str:
        return f"Statement {self.public_id}"

    @property
    def amount_due(self) -> Money:
        return Money(self.amount_due_minor, self.currency)


class EntryKind(models.TextChoices):
    CHARGE = "charge", "Charge"
    PAYMENT = "payment", "Payment"
    REFUND = "refund", "Refund"
    ADJUSTMENT = "adjustment", "Adjustment"
    # A disputed payment's funds were taken back by the card network (the patient owes it again)...
    CHARGEBACK = "chargeback", "Chargeback"
    # ...and returned when the clinic won the dispute.
    CHARGEBACK_REVERSAL = "chargeback_reversal", "Chargeback reversed"


class ImmutableRowError(RuntimeError):
    pass


class LedgerEntry(TenantOwnedModel):
    """One immutable movement on a patient's account.

    Invariant: amount_minor is signed from the clinic's point of view of what
    the patient owes: charges and refunds are positive (they raise the
    balance), payments negative, adjustments either sign but never zero.
    A balance is the sum of entries. Entries are never edited or deleted
    (PostgreSQL refuses it with a trigger); corrections are new entries.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="ledger_entries")
    statement = models.ForeignKey(Statement, null=True, on_delete=models.PROTECT, related_name="ledger_entries")
    kind = models.CharField(max_length=24, choices=EntryKind.choices)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    payment = models.ForeignKey("Payment", null=True, on_delete=models.PROTECT, related_name="ledger_entries")
    # The refund a refund entry records (billing.refund_models).
    refund = models.ForeignKey("Refund", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # The dispute a chargeback or its reversal records (billing.dispute_models).
    dispute = models.ForeignKey("Dispute", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # The adjustment an adjustment entry records (billing.adjustment_models).
    adjustment = models.ForeignKey("Adjustment", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # Short, non-PHI note (e.g. "Card payment, receipt R-000123").
    memo = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(kind="charge", amount_minor__gt=0)
                    | Q(kind="payment", amount_minor__lt=0)
                    | Q(kind="refund", amount_minor__gt=0)
                    | Q(kind="chargeback", amount_minor__gt=0)
                    | Q(kind="chargeback_reversal", amount_minor__lt=0)
                    | (Q(kind="adjustment") & ~Q(amount_minor=0))
                ),
                name="ledger_entry_sign_matches_kind",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["payment", "refund", "chargeback", "chargeback_reversal"], payment__isnull=False)
                | Q(kind__in=["charge", "adjustment"]),
                name="ledger_payment_entries_name_payment",
            ),
            # A payment is credited to the ledger at most once, whatever races.
            models.UniqueConstraint(
                fields=["payment"], condition=Q(kind="payment"), name="ledger_one_credit_per_payment"
            ),
            # A refund is debited at most once, whether the processor's answer or its webhook comes first.
            models.UniqueConstraint(fields=["refund"], condition=Q(kind="refund"), name="ledger_one_entry_per_refund"),
            models.CheckConstraint(
                condition=Q(kind="refund", refund__isnull=False) | ~Q(kind="refund"),
                name="ledger_refund_entries_name_refund",
            ),
            # Funds withdrawn and reinstated are each recorded at most once per dispute.
            models.CheckConstraint(
                condition=Q(
                    kind__in=["chargeback", "chargeback_reversal"], dispute__isnull=False, payment__isnull=False
                )
                | ~Q(kind__in=["chargeback", "chargeback_reversal"]),
                name="ledger_chargeback_entries_name_dispute",
            ),
            models.UniqueConstraint(
                fields=["dispute", "kind"],
                condition=Q(kind__in=["chargeback", "chargeback_reversal"]),
                name="ledger_one_entry_per_dispute_movement",
            ),
            # An approved adjustment is written at most once, whatever races.
            models.UniqueConstraint(
                fields=["adjustment"], condition=Q(kind="adjustment"), name="ledger_one_entry_per_adjustment"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount_minor} {self.currency}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ImmutableRowError("ledger entries are immutable; record a correcting entry instead")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ImmutableRowError("ledger entries are never deleted")

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)


class CardCheckPolicy(models.TextChoices):
    ACCEPT = "accept", "Accept the payment"
    FLAG = "flag", "Accept and flag it for review"
    REFUSE = "refuse", "Refuse the payment (the authorisation is released)"


class ProcessorAccount(TenantOwnedModel):
    """A clinic's Stripe account settings. One per tenant.

    The secret key and webhook signing secret are tenant secrets, encrypted
    with the tenant's "secret" data key; the publishable key is public.
    """

    # Binds the encrypted secrets to this row (associated data).
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    publishable_key = models.CharField(max_length=255)
    secret_key = EncryptedTextField(max_length=255, purpose=KeyPurpose.SECRET)
    webhook_secret = EncryptedTextField(max_length=255, purpose=KeyPurpose.SECRET)
    # What a failed CVC or postal-code check does.
    card_check_policy = models.CharField(max_length=16, choices=CardCheckPolicy.choices, default=CardCheckPolicy.FLAG)
    updated_at = models.DateTimeField(auto_now=True)
    # Whether the keys are live-mode keys, as the processor reported when they were checked.
    livemode = models.BooleanField(default=False)
    # When the processor last accepted the secret key (the settings page's "Check keys").
    keys_verified_at = models.DateTimeField(null=True, blank=True)
    # When each secret was last set: the settings page shows these, never the secrets.
    secret_key_set_at = models.DateTimeField(null=True, blank=True)
    webhook_secret_set_at = models.DateTimeField(null=True, blank=True)
    # The processor's id of the webhook endpoint registered through its API
    # (blank when the admin pasted the signing secret by hand).
    webhook_endpoint_id = models.CharField(max_length=255, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant"], name="processor_account_one_per_tenant")]

    def __str__(self) -> str:
        return f"Processor account of tenant {self.tenant_id}"


class PaymentChannel(models.TextChoices):
    # The patient paid on the portal.
    ONLINE = "online", "Online"
    # Staff keyed the card while the patient was on the phone.
    PHONE = "phone", "Phone"


class Checkout(TenantOwnedModel):
    """A visit to pay one statement: a patient's, opened by a successful
    look-up, or a phone payment a staff member opened in the console.

    Its public id appears in URLs. A patient's checkout is usable only by the
    browser session that opened it; a phone checkout only by staff of its
    clinic holding `payments.take_phone`. Each card submission is a Payment
    attempt of this checkout.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    statement = models.ForeignKey(Statement, on_delete=models.PROTECT, related_name="checkouts")
    # The SetupIntent the card form currently tokenizes into; replaced after each attempt.
    setup_intent_id = models.CharField(max_length=255, blank=True)
    # Lets a browser confirm that one SetupIntent (it cannot charge), but it is
    # still a processor credential: sealed with the tenant's "secret" key.
    setup_intent_client_secret = EncryptedTextField(max_length=255, blank=True, purpose=KeyPurpose.SECRET)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    # Online: the patient's own browser. Phone: staff keyed the card in the
    # console; its attempts are recorded with this channel and actor.
    channel = models.CharField(max_length=16, choices=PaymentChannel.choices, default=PaymentChannel.ONLINE)
    # Who opened a phone checkout (null for a patient's own), and their role
    # then: the payment's audit events name them instead of "guest".
    opened_by = models.ForeignKey("security.User", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    opened_by_role = models.CharField(max_length=32, blank=True)

    def __str__(self) -> str:
        return f"Checkout {self.public_id}"


class PaymentStatus(models.TextChoices):
    # Recorded by us; the processor has not (yet) acknowledged it.
    CREATED = "created", "Created"
    # The PaymentIntent lifecycle, as Stripe names it.
    REQUIRES_PAYMENT_METHOD = "requires_payment_method", "Failed"
    REQUIRES_CONFIRMATION = "requires_confirmation", "Awaiting confirmation"
    REQUIRES_ACTION = "requires_action", "Awaiting authentication"
    PROCESSING = "processing", "Processing"
    REQUIRES_CAPTURE = "requires_capture", "Authorised"
    SUCCEEDED = "succeeded", "Succeeded"
    CANCELED = "canceled", "Canceled"


class CheckResult(models.TextChoices):
    UNKNOWN = "", "Not reported"
    PASS = "pass", "Pass"
    FAIL = "fail", "Fail"
    UNAVAILABLE = "unavailable", "Unavailable"
    UNCHECKED = "unchecked", "Unchecked"


class Payment(TenantOwnedModel):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    checkout = models.ForeignKey(Checkout, on_delete=models.PROTECT, related_name="payments")
    statement = models.ForeignKey(Statement, on_delete=models.PROTECT, related_name="payments")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="payments")
    # 1, 2, 3... per checkout; with the checkout id it derives the idempotency key.
    attempt_number = models.PositiveIntegerField()
    # The SetupIntent whose card this attempt charges: one attempt per SetupIntent,
    # so a double submission cannot charge twice.
    setup_intent_id = models.CharField(max_length=255)
    # Invariant: amount_minor > 0, decided by the server from the balance.
    amount_minor = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    status = models.CharField(max_length=32, choices=PaymentStatus.choices, default=PaymentStatus.CREATED)
    capture_method = models.CharField(max_length=16, default="automatic")
    # Where the card was given: the portal, or to staff by phone.
    channel = models.CharField(max_length=16, choices=PaymentChannel.choices, default=PaymentChannel.ONLINE)
    processor_payment_intent_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    processor_payment_method_id = models.CharField(max_length=255, blank=True)
    # Card facts the processor returns. Never the number or CVC.
    card_brand = models.CharField(max_length=32, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    card_exp_month = models.PositiveSmallIntegerField(null=True)
    card_exp_year = models.PositiveSmallIntegerField(null=True)
    cvc_check = models.CharField(max_length=16, choices=CheckResult.choices, blank=True, default="")
    postal_check = models.CharField(max_length=16, choices=CheckResult.choices, blank=True, default="")
    flagged = models.BooleanField(default=False)
    flag_reason = models.CharField(max_length=64, blank=True)
    # Processor's code (card_declined, ...) and our plain-language message.
    failure_code = models.CharField(max_length=64, blank=True)
    failure_message = models.CharField(max_length=255, blank=True)
    # Set when the processor could not be reached; cleared when it answers.
    processor_unreachable_at = models.DateTimeField(null=True, blank=True)
    receipt_number = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["checkout", "attempt_number"], name="payment_attempt_unique"),
            models.UniqueConstraint(fields=["checkout", "setup_intent_id"], name="payment_one_per_setup_intent"),
            models.UniqueConstraint(
                fields=["tenant", "receipt_number"],
                condition=~Q(receipt_number=""),
                name="payment_receipt_number_unique",
            ),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="payment_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"Payment {self.public_id}"

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @property
    def idempotency_key_base(self) -> str:
        # Derived from the checkout and attempt, so a retry of the same attempt
        # (after a timeout) sends the same key and the processor dedupes it.
        return f"settle-{self.checkout.public_id}-{self.attempt_number}"

    @property
    def is_final(self) -> bool:
        return self.status in (PaymentStatus.SUCCEEDED, PaymentStatus.CANCELED) or (
            self.status == PaymentStatus.REQUIRES_PAYMENT_METHOD
        )


class ProcessorEvent(TenantOwnedModel):
    """A processor webhook event, stored once in the transaction of its effect."""

    event_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=64)
    payment = models.ForeignKey(Payment, null=True, on_delete=models.PROTECT, related_name="processor_events")
    outcome = models.CharField(max_length=32)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "event_id"], name="processor_event_once")]

    def __str__(self) -> str:
        return self.event_id


# Refunds, their policy, disputes and adjustments live in their own modules; imported here so Django
# registers them with the billing app.
from billing.adjustment_models import Adjustment, AdjustmentReason  # noqa: E402, F401
from billing.dispute_models import Dispute  # noqa: E402, F401
from billing.import_models import ImportJob  # noqa: E402, F401
from billing.refund_models import Refund, RefundPolicy  # noqa: E402, F401
