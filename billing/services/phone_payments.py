"""Phone payments: staff key a patient's card in the console (a virtual terminal).

The same checkout as a patient's (billing.services.checkout): the card is
tokenized in the staff member's browser with Stripe.js into the checkout's
SetupIntent, and the server charges an amount it decides from the balance.
What differs:

- the checkout is opened by a staff member with `payments.take_phone`, is
  marked channel "phone" (so are its payments) and names that staff member,
  whose id and role the payment's audit events carry instead of "guest";
- 3-D Secure cannot be completed over the phone (the bank asks the
  cardholder, not the clinic): an attempt the processor wants authenticated
  is canceled at once, with an idempotency key derived from the attempt, and
  staff are told the patient should pay online.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from audit.recorder import audit_record
from billing.models import Checkout, Payment, PaymentChannel, Statement
from billing.processor import get_processor
from billing.services.abandon import RELEASE_REASONS, payment_release
from billing.services.checkout import (
    CheckoutError,
    CheckoutExpired,
    SubmitOutcome,
    checkout_is_open,
    payment_refresh,
    payment_submit,
)
from billing.services.ledger import statement_payable
from portal.models import Tenant

# Long enough for one call; a phone checkout is not left open for the day.
PHONE_CHECKOUT_LIFETIME = timedelta(minutes=30)

PHONE_CHECKOUT_EXPIRED_MESSAGE = (
    "This phone payment page expired (they last 30 minutes). Nothing was charged. Start it again from the statement."
)

AUTHENTICATION_REFUSED_CODE = "authentication_required"
AUTHENTICATION_REFUSED_MESSAGE = RELEASE_REASONS[AUTHENTICATION_REFUSED_CODE]


def phone_checkout_open(
    *, tenant: Tenant, statement: Statement, actor: Any, actor_role: str, request: HttpRequest | None = None
) -> Checkout:
    """Open a phone checkout for `statement`, in the name of `actor`.

    Needs `payments.take_phone` (checked by the view). Refuses a statement
    with nothing left to pay (CheckoutError). Audited `phone_payment.opened`.
    """
    if statement_payable(statement=statement).minor_units <= 0:
        raise CheckoutError("This statement has nothing left to pay.")
    with transaction.atomic():
        checkout = Checkout.objects.create(
            tenant=tenant,
            statement=statement,
            expires_at=timezone.now() + PHONE_CHECKOUT_LIFETIME,
            channel=PaymentChannel.PHONE,
            opened_by=actor,
            opened_by_role=actor_role,
        )
        audit_record(
            action="phone_payment.opened",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            target_type="checkout",
            target_id=str(checkout.public_id),
            request=request,
            details={"statement": str(statement.public_id), "patients": [str(statement.patient.public_id)]},
        )
    return checkout


def phone_payment_submit(
    *, tenant: Tenant, checkout: Checkout, amount_text: str, setup_intent_id: str, ip: str, session_key: str
) -> SubmitOutcome:
    """Charge the card staff tokenized, for an amount the server validates against the balance.

    As `payment_submit` (rate limits, amount <= balance less attempts in
    flight, one attempt per SetupIntent), except that an attempt the
    processor wants authenticated is canceled. Raises CheckoutError.
    """
    if checkout.channel != PaymentChannel.PHONE:
        raise CheckoutError("This is not a phone payment.")
    if not checkout_is_open(checkout):
        raise CheckoutExpired(PHONE_CHECKOUT_EXPIRED_MESSAGE)
    outcome = payment_submit(
        tenant=tenant,
        checkout=checkout,
        amount_text=amount_text,
        setup_intent_id=setup_intent_id,
        ip=ip,
        session_key=session_key,
    )
    return _refuse_authentication(tenant=tenant, outcome=outcome)


def phone_payment_refresh(*, tenant: Tenant, payment: Payment) -> SubmitOutcome:
    """Re-read a phone payment from the processor; an authentication request is refused as above."""
    return _refuse_authentication(tenant=tenant, outcome=payment_refresh(tenant=tenant, payment=payment))


def _refuse_authentication(*, tenant: Tenant, outcome: SubmitOutcome) -> SubmitOutcome:
    if outcome.state != "requires_action" or outcome.payment is None:
        return outcome
    # Cancelled as any attempt left waiting for authentication is (one idempotency key
    # for the patient, staff and the sweep); if the processor does not answer,
    # nothing can be charged without the cardholder, and the sweep cancels it later.
    release = payment_release(
        payment=outcome.payment,
        processor=get_processor(tenant),
        reason=AUTHENTICATION_REFUSED_CODE,
        source="checkout",
    )
    return SubmitOutcome(release.payment, "failed", AUTHENTICATION_REFUSED_MESSAGE)
