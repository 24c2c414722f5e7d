"""Balances are sums of immutable ledger entries."""

from __future__ import annotations

from django.db.models import Q, Sum

from billing.models import EntryKind, LedgerEntry, Patient, Payment, PaymentStatus, Statement
from portal.money import Money

# Payment attempts that may still take money: their amounts are held back from
# what a patient may pay next, so two attempts cannot together overpay.
IN_FLIGHT_STATUSES = (
    PaymentStatus.CREATED,
    PaymentStatus.REQUIRES_CONFIRMATION,
    PaymentStatus.REQUIRES_ACTION,
    PaymentStatus.PROCESSING,
    PaymentStatus.REQUIRES_CAPTURE,
)
# Attempts waiting for the patient's own authentication at their bank (3-D
# Secure). They hold nothing back: a patient who closed the tab may pay again
# at once, and paying again cancels them at the processor first
# (billing.services.abandon), so they can never be charged as well. Only at
# the moment of charging are they counted: one whose cancel failed still holds.
AWAITING_PATIENT_STATUSES = (PaymentStatus.REQUIRES_ACTION, PaymentStatus.REQUIRES_CONFIRMATION)


def statement_balance(*, statement: Statement) -> Money:
    total = LedgerEntry.objects.filter(statement=statement).aggregate(total=Sum("amount_minor"))["total"]
    return Money(int(total or 0), statement.currency)


def patient_balance(*, patient: Patient, currency: str) -> Money:
    total = LedgerEntry.objects.filter(patient=patient, currency=currency).aggregate(total=Sum("amount_minor"))["total"]
    return Money(int(total or 0), currency)


def statement_in_flight(*, statement: Statement, include_awaiting_patient: bool = False) -> Money:
    """What attempts still in flight hold back from the balance.

    Attempts awaiting the patient's authentication count only with
    `include_awaiting_patient` (when a new attempt is about to be charged).
    """
    # An attempt the processor never acknowledged (we told the patient they
    # were not charged) does not hold the balance back; if its charge did go
    # through after all, the webhook credits it and staff refund any excess.
    unacknowledged = Q(status=PaymentStatus.CREATED, processor_unreachable_at__isnull=False)
    held = Payment.objects.filter(statement=statement, status__in=IN_FLIGHT_STATUSES).exclude(unacknowledged)
    if not include_awaiting_patient:
        held = held.exclude(status__in=AWAITING_PATIENT_STATUSES)
    total = held.aggregate(total=Sum("amount_minor"))["total"]
    return Money(int(total or 0), statement.currency)


def statement_awaiting_patient(*, statement: Statement) -> Money:
    """What attempts awaiting the patient's authentication are for (they hold nothing)."""
    total = Payment.objects.filter(statement=statement, status__in=AWAITING_PATIENT_STATUSES).aggregate(
        total=Sum("amount_minor")
    )["total"]
    return Money(int(total or 0), statement.currency)


def statement_payable(*, statement: Statement, include_awaiting_patient: bool = False) -> Money:
    """What a patient may pay now: the balance less attempts still in flight."""
    in_flight = statement_in_flight(statement=statement, include_awaiting_patient=include_awaiting_patient)
    payable = statement_balance(statement=statement) - in_flight
    return payable if payable.minor_units > 0 else Money(0, statement.currency)


def ledger_credit_payment(*, payment: Payment, memo: str) -> LedgerEntry:
    """Credit a succeeded payment. The unique constraint makes it once-only;
    callers hold the payment row lock."""
    return LedgerEntry.objects.create(
        tenant=payment.tenant,
        patient=payment.patient,
        statement=payment.statement,
        kind=EntryKind.PAYMENT,
        amount_minor=-payment.amount_minor,
        currency=payment.currency,
        payment=payment,
        memo=memo,
    )
