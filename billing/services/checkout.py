"""A patient's checkout: open it, tokenize the card, submit, finish.

The browser tokenizes the card into the checkout's SetupIntent with
Stripe.js; the server then creates and confirms the PaymentIntent for an
amount it decides from the ledger. Card data never reaches this server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from audit.models import Outcome
from audit.recorder import audit_record
from billing.models import Checkout, Payment, PaymentStatus, ProcessorAccount, Statement
from billing.processor import CardDeclined, ProcessorError, ProcessorUnavailable, get_processor
from billing.services.abandon import payments_release_awaiting
from billing.services.ledger import statement_payable
from billing.services.payment_states import GENERIC_FAILURE_MESSAGE, UNAVAILABLE_MESSAGE
from billing.services.payments import (
    capture_method_for,
    checkout_actor,
    payment_record_decline,
    payment_record_unreachable,
    payment_sync,
)
from portal.models import Tenant
from portal.money import Money, MoneyParseError
from security import ratelimit

CHECKOUT_LIFETIME = timedelta(hours=2)

# Card-testing brakes (SECURITY.md): payment submissions per window.
SUBMISSIONS_PER_IP_PER_HOUR = 20
SUBMISSIONS_PER_SESSION_PER_HOUR = 10
SUBMISSIONS_PER_STATEMENT_PER_HOUR = 10


STILL_AWAITING_MESSAGE = (
    "An earlier payment on this statement is still waiting for your bank's confirmation and we could not "
    "cancel it just now. You have not been charged again. Please try again in a few minutes."
)


class CheckoutError(Exception):
    """A submission refused before anything was charged; `message` is for the patient."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class CheckoutExpired(CheckoutError):
    pass


@dataclass(frozen=True)
class SubmitOutcome:
    """What the browser should do next."""

    payment: Payment | None
    # "succeeded" | "requires_action" | "failed" | "pending" | "unavailable"
    state: str
    message: str = ""
    client_secret: str = ""


def checkout_open(*, tenant: Tenant, statement: Statement, request: HttpRequest | None = None) -> Checkout:
    """Open a checkout for a statement the guest just looked up."""
    with transaction.atomic():
        checkout = Checkout.objects.create(
            tenant=tenant, statement=statement, expires_at=timezone.now() + CHECKOUT_LIFETIME
        )
        audit_record(
            action="checkout.opened",
            tenant=tenant,
            actor_role="guest",
            target_type="checkout",
            target_id=str(checkout.public_id),
            request=request,
            details={"statement": str(statement.public_id)},
        )
    return checkout


def checkout_is_open(checkout: Checkout) -> bool:
    return checkout.expires_at > timezone.now()


def _metadata(tenant: Tenant, checkout: Checkout) -> dict[str, str]:
    # Opaque ids only: nothing that identifies the patient or their care.
    return {"settle_tenant": str(tenant.public_id), "settle_checkout": str(checkout.public_id)}


@dataclass(frozen=True)
class CardSetup:
    """What the card form needs to tokenize a card into this checkout."""

    publishable_key: str
    client_secret: str
    setup_intent_id: str


def checkout_card_setup(*, tenant: Tenant, checkout: Checkout, renew: bool = False) -> CardSetup:
    """The SetupIntent the card form tokenizes into.

    A SetupIntent already used by an attempt is replaced with a fresh one, so
    each attempt tokenizes its own card; `renew` replaces it regardless (the
    browser saw it fail, e.g. declined at setup). Raises ProcessorUnavailable.
    """
    processor = get_processor(tenant)
    with transaction.atomic():
        checkout = Checkout.objects.select_for_update().get(pk=checkout.pk)
        used = Payment.objects.filter(checkout=checkout, setup_intent_id=checkout.setup_intent_id).exists()
        if checkout.setup_intent_id and not used and not renew:
            return CardSetup(processor.publishable_key, checkout.setup_intent_client_secret, checkout.setup_intent_id)
        # Each new SetupIntent of the checkout gets its own key: attempts so
        # far, plus one for every renewal of an unused form.
        sequence = Payment.objects.filter(checkout=checkout).count() + 1
        idempotency_key = f"settle-{checkout.public_id}-setup-{sequence}"
        if renew and checkout.setup_intent_id:
            idempotency_key += f"-renew-{checkout.setup_intent_id}"
        setup = processor.create_setup_intent(metadata=_metadata(tenant, checkout), idempotency_key=idempotency_key)
        checkout.setup_intent_id = setup.id
        checkout.setup_intent_client_secret = setup.client_secret
        checkout.save(update_fields=["setup_intent_id", "setup_intent_client_secret"])
        return CardSetup(processor.publishable_key, setup.client_secret, setup.id)


def _validate_amount(*, tenant: Tenant, statement: Statement, amount_text: str) -> Money:
    try:
        amount = Money.parse(amount_text, statement.currency)
    except MoneyParseError as exc:
        raise CheckoutError(str(exc), field="amount") from None
    shown = statement_payable(statement=statement)
    # Attempts awaiting authentication were canceled before we got here; one
    # whose cancel failed could still be confirmed, so it holds its amount.
    payable = statement_payable(statement=statement, include_awaiting_patient=True)
    if amount.minor_units > 0 and payable < amount <= shown:
        raise CheckoutError(STILL_AWAITING_MESSAGE)
    if payable.minor_units <= 0:
        raise CheckoutError("This statement has nothing left to pay.", field="amount")
    if amount.minor_units <= 0:
        raise CheckoutError("Enter an amount greater than zero.", field="amount")
    if amount > payable:
        raise CheckoutError(f"The most you can pay on this statement is {payable}.", field="amount")
    minimum = Money(min(tenant.minimum_payment_minor, payable.minor_units), statement.currency)
    if amount < minimum:
        raise CheckoutError(f"The smallest payment we can take is {minimum}.", field="amount")
    return amount


def _check_rate_limits(*, checkout: Checkout, ip: str, session_key: str) -> None:
    limits = (
        ("pay-ip", ip, SUBMISSIONS_PER_IP_PER_HOUR),
        ("pay-session", session_key, SUBMISSIONS_PER_SESSION_PER_HOUR),
        ("pay-statement", str(checkout.statement.public_id), SUBMISSIONS_PER_STATEMENT_PER_HOUR),
    )
    for bucket, key, limit in limits:
        if not ratelimit.hit(bucket, key, limit=limit, window_seconds=3600):
            raise CheckoutError("Too many payment attempts. Please wait an hour and try again, or call the clinic.")


def _claim_attempt(
    *, tenant: Tenant, checkout: Checkout, amount_text: str, setup_intent_id: str
) -> tuple[Payment, bool]:
    """Create the attempt for this SetupIntent, or find the existing one.

    Returns (payment, should_call_processor). Holding the checkout row lock
    makes concurrent submissions of one checkout queue up: the first creates
    the attempt, the others find it and do not call the processor again.
    """
    with transaction.atomic():
        checkout = Checkout.objects.select_for_update().select_related("statement").get(pk=checkout.pk)
        existing = Payment.objects.filter(checkout=checkout, setup_intent_id=setup_intent_id).first()
        if existing is not None:
            retry = existing.status == PaymentStatus.CREATED and existing.processor_unreachable_at is not None
            if retry:
                # Claim the retry so a concurrent duplicate does not also send it.
                existing.processor_unreachable_at = None
                existing.save(update_fields=["processor_unreachable_at", "updated_at"])
            return existing, retry
        statement = checkout.statement
        amount = _validate_amount(tenant=tenant, statement=statement, amount_text=amount_text)
        if setup_intent_id != checkout.setup_intent_id:
            raise CheckoutError("This card form has expired. Please enter your card again.")
        account = ProcessorAccount.objects.get(tenant=tenant)
        attempt_number = Payment.objects.filter(checkout=checkout).count() + 1
        try:
            payment = Payment.objects.create(
                tenant=tenant,
                checkout=checkout,
                statement=statement,
                patient_id=statement.patient_id,
                attempt_number=attempt_number,
                setup_intent_id=setup_intent_id,
                amount_minor=amount.minor_units,
                currency=amount.currency,
                capture_method=capture_method_for(account),
                channel=checkout.channel,
            )
        except IntegrityError:
            raise CheckoutError("This payment is already being processed.") from None
        actor, actor_role = checkout_actor(checkout)
        audit_record(
            action="payment.attempted",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            target_type="payment",
            target_id=str(payment.public_id),
            details={"amount_minor": payment.amount_minor, "currency": payment.currency, "attempt": attempt_number},
        )
        return payment, True


def outcome_for(payment: Payment) -> SubmitOutcome:
    status = payment.status
    if status == PaymentStatus.SUCCEEDED:
        return SubmitOutcome(payment, "succeeded")
    if status == PaymentStatus.REQUIRES_ACTION:
        return SubmitOutcome(payment, "requires_action")
    if status in (PaymentStatus.REQUIRES_PAYMENT_METHOD, PaymentStatus.CANCELED):
        return SubmitOutcome(payment, "failed", payment.failure_message or GENERIC_FAILURE_MESSAGE)
    if status == PaymentStatus.CREATED and payment.processor_unreachable_at is not None:
        return SubmitOutcome(payment, "unavailable", UNAVAILABLE_MESSAGE)
    return SubmitOutcome(payment, "pending", "Your payment is being processed.")


def payment_submit(
    *,
    tenant: Tenant,
    checkout: Checkout,
    amount_text: str,
    setup_intent_id: str,
    ip: str,
    session_key: str,
) -> SubmitOutcome:
    """Charge the card tokenized into `setup_intent_id` for `amount_text`.

    The amount is validated against the live balance (less attempts in
    flight); the browser decides nothing else. Earlier attempts of the
    statement still awaiting 3-D Secure are canceled at the processor first
    (billing.services.abandon). Raises CheckoutError for bad input (nothing
    recorded or charged).
    """
    if not checkout_is_open(checkout):
        raise CheckoutExpired("This payment page has expired. Please look your statement up again.")
    _check_rate_limits(checkout=checkout, ip=ip, session_key=session_key)
    # Cancel first: an earlier attempt left at 3-D Secure (the tab was closed)
    # is canceled at the processor before this one can be charged. Only for the
    # card form this checkout issued: a stale or made-up one cancels nothing.
    if setup_intent_id and setup_intent_id == checkout.setup_intent_id:
        payments_release_awaiting(tenant=tenant, statement=checkout.statement, keep_setup_intent_id=setup_intent_id)
    payment, should_call = _claim_attempt(
        tenant=tenant, checkout=checkout, amount_text=amount_text, setup_intent_id=setup_intent_id
    )
    if not should_call:
        return outcome_for(payment)

    processor = get_processor(tenant)
    try:
        setup = processor.retrieve_setup_intent(setup_intent_id)
        if setup.status != "succeeded" or not setup.payment_method_id:
            return outcome_for(
                payment_record_decline(payment_id=payment.pk, code="setup_incomplete", decline_code="", intent_id=None)
            )
        if setup.metadata.get("settle_checkout") != str(checkout.public_id):
            raise ProcessorError("setup intent belongs to another checkout")
        intent = processor.create_payment(
            amount=payment.amount_minor,
            currency=payment.currency,
            payment_method_id=setup.payment_method_id,
            capture_method=payment.capture_method,
            metadata={**_metadata(tenant, checkout), "settle_payment": str(payment.public_id)},
            idempotency_key=f"{payment.idempotency_key_base}-create",
        )
    except CardDeclined as exc:
        return outcome_for(
            payment_record_decline(
                payment_id=payment.pk, code=exc.code, decline_code=exc.decline_code, intent_id=exc.payment_intent_id
            )
        )
    except ProcessorUnavailable:
        return outcome_for(payment_record_unreachable(payment_id=payment.pk))
    except ProcessorError:
        return outcome_for(
            payment_record_decline(payment_id=payment.pk, code="processing_error", decline_code="", intent_id=None)
        )
    payment = payment_sync(payment=payment, intent=intent, processor=processor, source="checkout")
    outcome = outcome_for(payment)
    if outcome.state == "requires_action":
        return SubmitOutcome(payment, "requires_action", client_secret=intent.client_secret)
    return outcome


def payment_refresh(*, tenant: Tenant, payment: Payment) -> SubmitOutcome:
    """Re-read the payment from the processor (after 3-D Secure in the browser)."""
    if not payment.processor_payment_intent_id:
        return outcome_for(payment)
    processor = get_processor(tenant)
    try:
        intent = processor.retrieve_payment(payment.processor_payment_intent_id)
    except ProcessorUnavailable:
        return SubmitOutcome(payment, "pending", "We are confirming your payment. This page will update shortly.")
    payment = payment_sync(payment=payment, intent=intent, processor=processor, source="checkout")
    return outcome_for(payment)


def checkout_audit_unavailable(*, tenant: Tenant, checkout: Checkout) -> None:
    """The card form could not be prepared: the processor did not answer."""
    with transaction.atomic():
        audit_record(
            action="payment.processor_unavailable",
            tenant=tenant,
            outcome=Outcome.FAILURE,
            actor_role="guest",
            target_type="checkout",
            target_id=str(checkout.public_id),
        )
