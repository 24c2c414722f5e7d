"""Release payment attempts abandoned at the patient's own authentication.

An attempt in `requires_action` waits for the patient to finish 3-D Secure
with their bank. If they closed the tab, nothing will ever finish it; it holds
no part of the balance (billing.services.ledger), but its PaymentIntent could
still be confirmed from an old tab. So before anything else can be charged on
the statement, it is canceled at the processor: by the patient paying again
(`payments_release_awaiting`), by staff (`payment_staff_cancel`) or by the
sweep after an hour (billing.services.sweep).

Every cancel sends the same idempotency key, `<attempt key>-abandon`, so the
three paths racing each other are one request to the processor. A cancel the
processor refuses or does not answer changes nothing here: the attempt stays
`requires_action`, and a new attempt counts it as holding the balance, so the
two can never both be charged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.http import HttpRequest

from audit.recorder import audit_record
from billing.models import Payment, PaymentStatus, Statement
from billing.processor import Processor, ProcessorError, get_processor
from billing.services.ledger import AWAITING_PATIENT_STATUSES
from billing.services.payments import IntentMismatch, payment_apply_intent, payment_sync
from portal.models import Tenant
from security.models import User

logger = logging.getLogger(__name__)

# Why an attempt was released, as stored in failure_code, and what the patient reads.
RELEASE_REASONS: dict[str, str] = {
    "replaced": "This payment was canceled because a new payment was started. You have not been charged for it.",
    "canceled_by_clinic": "The clinic canceled this payment. You have not been charged.",
    "abandoned": "This payment was canceled because authentication was not completed. You have not been charged.",
    # A phone payment (billing.services.phone_payments): staff cannot complete the cardholder's authentication.
    "authentication_required": (
        "This card needs the cardholder's own authentication (3-D Secure), which cannot be done over the phone. "
        "Nothing was charged. Ask the patient to pay online with this card, or take another card."
    ),
}


class PaymentNotCancelable(Exception):
    """The payment is not waiting for the patient's authentication; nothing changed."""


class PaymentCancelFailed(Exception):
    """The processor refused or did not answer the cancel; the attempt still holds."""


@dataclass(frozen=True)
class Release:
    payment: Payment
    released: bool


def abandon_idempotency_key(payment: Payment) -> str:
    return f"{payment.idempotency_key_base}-abandon"


def _is_awaiting_patient(payment: Payment) -> bool:
    return payment.status in AWAITING_PATIENT_STATUSES and bool(payment.processor_payment_intent_id)


def payment_release(
    *,
    payment: Payment,
    processor: Processor,
    reason: str,
    source: str,
    on_released: Callable[[Payment], None] | None = None,
) -> Release:
    """Cancel an attempt awaiting the patient's authentication at the processor.

    Side effects: the cancel call (idempotency key `<attempt>-abandon`); on
    success the attempt becomes `canceled` with `reason`, audited as
    `payment.canceled`, and `on_released` runs in that same transaction.
    When the processor refuses or is unreachable, the attempt is re-read (it
    may have been authenticated meanwhile) and left as the processor says;
    `released` is False.
    """
    if not _is_awaiting_patient(payment):
        return Release(payment, released=False)
    intent_id = payment.processor_payment_intent_id
    assert intent_id
    try:
        canceled = processor.cancel_payment(intent_id, idempotency_key=abandon_idempotency_key(payment))
    except ProcessorError as exc:
        logger.warning("awaiting payment not canceled", extra={"payment": str(payment.public_id), "error": str(exc)})
        return Release(_reread(payment, processor, source), released=False)
    with transaction.atomic():
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        if locked.status in AWAITING_PATIENT_STATUSES and not locked.failure_message:
            locked.failure_code = reason
            locked.failure_message = RELEASE_REASONS[reason]
            locked.save(update_fields=["failure_code", "failure_message", "updated_at"])
        try:
            result = payment_apply_intent(payment_id=payment.pk, intent=canceled, source=source)
        except IntentMismatch:
            # Our record disagrees with the processor's object: nothing is applied.
            logger.warning("canceled intent does not match its payment", extra={"payment": str(payment.public_id)})
            transaction.set_rollback(True)
            return Release(payment, released=False)
        released = result.payment.status == PaymentStatus.CANCELED
        if released and on_released is not None:
            on_released(result.payment)
    return Release(result.payment, released=released)


def _reread(payment: Payment, processor: Processor, source: str) -> Payment:
    assert payment.processor_payment_intent_id
    try:
        intent = processor.retrieve_payment(payment.processor_payment_intent_id)
        return payment_sync(payment=payment, intent=intent, processor=processor, source=source)
    except (ProcessorError, IntentMismatch):
        payment.refresh_from_db()
        return payment


def payments_release_awaiting(*, tenant: Tenant, statement: Statement, keep_setup_intent_id: str) -> list[Release]:
    """Before a new attempt on `statement` is charged: cancel every earlier
    attempt still awaiting the patient's authentication (patient paying again).

    The attempt of `keep_setup_intent_id` is left alone: that is a repeat of
    the submission being made (a double click), not an abandoned one.
    """
    waiting = list(
        Payment.objects.filter(
            tenant=tenant,
            statement=statement,
            status__in=AWAITING_PATIENT_STATUSES,
            processor_payment_intent_id__isnull=False,
        )
        .exclude(setup_intent_id=keep_setup_intent_id)
        .select_related("checkout", "tenant")
    )
    if not waiting:
        return []
    processor = get_processor(tenant)
    return [payment_release(payment=p, processor=processor, reason="replaced", source="checkout") for p in waiting]


def payment_staff_cancel(
    *, tenant: Tenant, actor: User, actor_role: str, payment: Payment, request: HttpRequest | None = None
) -> Payment:
    """Staff cancel an attempt awaiting the patient's authentication.

    Needs `payments.cancel` (the view checks it). Raises PaymentNotCancelable
    when the payment is not awaiting authentication and PaymentCancelFailed
    when the processor did not cancel it; both change nothing. On success the
    payment is `canceled` (`payment.canceled`) and the staff act is audited as
    `payment.staff_canceled` in the same transaction.
    """
    if not _is_awaiting_patient(payment):
        raise PaymentNotCancelable

    def audit(canceled: Payment) -> None:
        audit_record(
            action="payment.staff_canceled",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            target_type="payment",
            target_id=str(canceled.public_id),
            request=request,
            details={"amount_minor": canceled.amount_minor, "currency": canceled.currency},
        )

    release = payment_release(
        payment=payment,
        processor=get_processor(tenant),
        reason="canceled_by_clinic",
        source="staff",
        on_released=audit,
    )
    if release.released:
        return release.payment
    if release.payment.status in AWAITING_PATIENT_STATUSES:
        raise PaymentCancelFailed
    raise PaymentNotCancelable
