"""Apply the processor's view of a PaymentIntent to our Payment.

State is always decided from the processor's current object (retrieved or
just returned by a call), never from the order events arrive in. The payment
row is locked while it changes; a balance is credited only when the processor
says the payment succeeded, and at most once (ledger unique constraint).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.models import Outcome
from audit.recorder import audit_record
from billing.models import CardCheckPolicy, Checkout, CheckResult, Payment, PaymentStatus, ProcessorAccount
from billing.processor import IntentSnapshot, Processor, ProcessorUnavailable
from billing.services.ledger import ledger_credit_payment
from billing.services.payment_states import DECLINE_MESSAGES, can_transition, decline_message

logger = logging.getLogger(__name__)


class IntentMismatch(Exception):
    """The intent does not belong to this payment or disagrees on the amount."""


@dataclass(frozen=True)
class ApplyResult:
    payment: Payment
    changed: bool


def _check_value(raw: str | None) -> str:
    return raw if raw in CheckResult.values else ""


def card_checks_failed(payment: Payment) -> list[str]:
    failed = []
    if payment.cvc_check == CheckResult.FAIL:
        failed.append("cvc_check_failed")
    if payment.postal_check == CheckResult.FAIL:
        failed.append("postal_check_failed")
    return failed


def capture_method_for(account: ProcessorAccount) -> str:
    # When failed checks must refuse the payment, authorise first and decide
    # before capturing: refusing then releases the hold instead of refunding.
    return "manual" if account.card_check_policy == CardCheckPolicy.REFUSE else "automatic"


def _new_receipt_number() -> str:
    token = secrets.token_hex(6).upper()
    return f"R-{token[:4]}-{token[4:8]}-{token[8:]}"


def payment_apply_intent(*, payment_id: int, intent: IntentSnapshot, source: str) -> ApplyResult:
    """Bring the payment up to the processor's state. Idempotent.

    `source` names who told us (checkout, webhook, sweep) for the audit trail.
    Side effects: ledger credit and audit events, in this transaction.
    Callers that need a transaction shared with other writes (the webhook's
    event record) call this inside their own atomic block.
    """
    with transaction.atomic():
        payment = Payment.objects.select_for_update().select_related("tenant", "checkout").get(pk=payment_id)
        _verify_intent_belongs(payment, intent)
        fields = _card_facts(payment, intent)
        changed = False
        old = payment.status
        if intent.status != old:
            if not can_transition(old, intent.status):
                logger.warning(
                    "ignored illegal payment transition",
                    extra={"payment": str(payment.public_id), "from": old, "to": intent.status},
                )
            else:
                payment.status = intent.status
                fields.add("status")
                changed = True
                _on_enter(payment, intent, fields, source)
        if fields:
            payment.save(update_fields=sorted(fields | {"updated_at"}))
        return ApplyResult(payment=payment, changed=changed)


def _verify_intent_belongs(payment: Payment, intent: IntentSnapshot) -> None:
    named = intent.metadata.get("settle_payment")
    if payment.processor_payment_intent_id and payment.processor_payment_intent_id != intent.id:
        raise IntentMismatch("intent id differs from the one recorded")
    if not payment.processor_payment_intent_id and named != str(payment.public_id):
        raise IntentMismatch("intent metadata names another payment")
    if intent.amount != payment.amount_minor or intent.currency != payment.currency:
        raise IntentMismatch("intent amount or currency differs from the payment")


def _card_facts(payment: Payment, intent: IntentSnapshot) -> set[str]:
    updates = {
        "processor_payment_intent_id": intent.id,
        "processor_payment_method_id": intent.payment_method_id or payment.processor_payment_method_id,
        "card_brand": intent.card_brand or payment.card_brand,
        "card_last4": intent.card_last4 or payment.card_last4,
        "card_exp_month": intent.card_exp_month or payment.card_exp_month,
        "card_exp_year": intent.card_exp_year or payment.card_exp_year,
        "cvc_check": _check_value(intent.cvc_check) or payment.cvc_check,
        "postal_check": _check_value(intent.postal_check) or payment.postal_check,
        "processor_unreachable_at": None,
    }
    changed = set()
    for name, value in updates.items():
        if getattr(payment, name) != value:
            setattr(payment, name, value)
            changed.add(name)
    return changed


def checkout_actor(checkout: Checkout) -> tuple[Any, str]:
    """Who acts in a checkout: the staff member who opened a phone checkout, else the guest patient."""
    if checkout.opened_by_id is not None:
        return checkout.opened_by, checkout.opened_by_role
    return None, "guest"


def _actor_for(payment: Payment, source: str) -> tuple[Any, str]:
    if source == "webhook":
        return None, "processor"
    # What the checkout itself learns (the card form's answer) is the act of
    # whoever is charging the card: on a phone checkout, the staff member.
    if source == "checkout" and payment.checkout.opened_by_id is not None:
        return checkout_actor(payment.checkout)
    return None, "system"


def _audit_payment(payment: Payment, action: str, outcome: str, source: str, **details: str | int | bool) -> None:
    actor, actor_role = _actor_for(payment, source)
    audit_record(
        action=action,
        tenant=payment.tenant,
        outcome=outcome,
        actor=actor,
        actor_role=actor_role,
        target_type="payment",
        target_id=str(payment.public_id),
        details={"source": source, "amount_minor": payment.amount_minor, "currency": payment.currency, **details},
    )


def _on_enter(payment: Payment, intent: IntentSnapshot, fields: set[str], source: str) -> None:
    status = payment.status
    if status == PaymentStatus.SUCCEEDED:
        payment.succeeded_at = timezone.now()
        payment.receipt_number = _new_receipt_number()
        payment.failure_code = ""
        payment.failure_message = ""
        fields.update({"succeeded_at", "receipt_number", "failure_code", "failure_message"})
        ledger_credit_payment(payment=payment, memo=f"Card payment, receipt {payment.receipt_number}")
        _audit_payment(payment, "payment.succeeded", Outcome.SUCCESS, source)
        failed_checks = card_checks_failed(payment)
        policy = ProcessorAccount.objects.get(tenant=payment.tenant).card_check_policy
        # Under `refuse` a success with failed checks means the checks came in
        # after capture: flag it so staff can refund.
        if failed_checks and policy != CardCheckPolicy.ACCEPT:
            payment.flagged = True
            payment.flag_reason = ",".join(failed_checks)
            fields.update({"flagged", "flag_reason"})
            _audit_payment(payment, "payment.flagged", Outcome.SUCCESS, source, reason=payment.flag_reason)
    elif status == PaymentStatus.REQUIRES_PAYMENT_METHOD:
        payment.failure_code = intent.decline_code or intent.failure_code or "card_declined"
        payment.failure_message = decline_message(intent.failure_code, intent.decline_code)
        fields.update({"failure_code", "failure_message"})
        _audit_payment(payment, "payment.failed", Outcome.FAILURE, source, code=payment.failure_code)
    elif status == PaymentStatus.CANCELED:
        if not payment.failure_message:
            payment.failure_code = payment.failure_code or "canceled"
            payment.failure_message = "This payment was canceled. You have not been charged."
            fields.update({"failure_code", "failure_message"})
        _audit_payment(payment, "payment.canceled", Outcome.SUCCESS, source, code=payment.failure_code)


def payment_record_decline(*, payment_id: int, code: str, decline_code: str, intent_id: str | None) -> Payment:
    """The processor refused the card while creating the intent."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().select_related("tenant").get(pk=payment_id)
        if payment.status != PaymentStatus.CREATED:
            return payment
        payment.status = PaymentStatus.REQUIRES_PAYMENT_METHOD
        payment.failure_code = decline_code or code
        payment.failure_message = decline_message(code, decline_code)
        payment.processor_unreachable_at = None
        fields = ["status", "failure_code", "failure_message", "processor_unreachable_at", "updated_at"]
        if intent_id and not payment.processor_payment_intent_id:
            payment.processor_payment_intent_id = intent_id
            fields.append("processor_payment_intent_id")
        payment.save(update_fields=fields)
        _audit_payment(payment, "payment.failed", Outcome.FAILURE, "checkout", code=payment.failure_code)
        return payment


def payment_record_unreachable(*, payment_id: int) -> Payment:
    """The processor did not answer. The attempt stays `created`; retrying it
    resends the same idempotency key, so it can never charge twice."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().select_related("tenant").get(pk=payment_id)
        payment.processor_unreachable_at = timezone.now()
        payment.save(update_fields=["processor_unreachable_at", "updated_at"])
        _audit_payment(payment, "payment.processor_unavailable", Outcome.FAILURE, "checkout")
        return payment


def _refuse_authorisation(payment: Payment, processor: Processor) -> IntentSnapshot:
    with transaction.atomic():
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        locked.failure_code = "card_check_refused"
        locked.failure_message = DECLINE_MESSAGES["card_check_refused"]
        locked.save(update_fields=["failure_code", "failure_message", "updated_at"])
    assert payment.processor_payment_intent_id
    return processor.cancel_payment(
        payment.processor_payment_intent_id, idempotency_key=f"{payment.idempotency_key_base}-cancel"
    )


def payment_sync(*, payment: Payment, intent: IntentSnapshot, processor: Processor, source: str) -> Payment:
    """Apply `intent`, then finish an authorisation that waits for our decision.

    A payment authorised with manual capture (tenant policy `refuse`) is
    captured when its card checks passed and canceled when one failed.
    """
    result = payment_apply_intent(payment_id=payment.pk, intent=intent, source=source)
    payment = result.payment
    if payment.status != PaymentStatus.REQUIRES_CAPTURE:
        return payment
    account = ProcessorAccount.objects.get(tenant=payment.tenant)
    try:
        if card_checks_failed(payment) and account.card_check_policy == CardCheckPolicy.REFUSE:
            final = _refuse_authorisation(payment, processor)
        else:
            assert payment.processor_payment_intent_id
            final = processor.capture_payment(
                payment.processor_payment_intent_id, idempotency_key=f"{payment.idempotency_key_base}-capture"
            )
    except ProcessorUnavailable:
        # The sweep finishes it later from the processor's current state.
        return payment
    return payment_apply_intent(payment_id=payment.pk, intent=final, source=source).payment
