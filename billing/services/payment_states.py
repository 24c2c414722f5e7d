"""The PaymentIntent lifecycle: which status may follow which.

`created` is ours (recorded before the processor answered); the rest are
Stripe's PaymentIntent statuses. `requires_payment_method` after an attempt
means the attempt failed; a new attempt is a new Payment.
"""

from __future__ import annotations

from billing.models import PaymentStatus as S

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.CREATED: frozenset(
        {
            S.REQUIRES_PAYMENT_METHOD,
            S.REQUIRES_CONFIRMATION,
            S.REQUIRES_ACTION,
            S.PROCESSING,
            S.REQUIRES_CAPTURE,
            S.SUCCEEDED,
            S.CANCELED,
        }
    ),
    S.REQUIRES_CONFIRMATION: frozenset(
        {S.REQUIRES_ACTION, S.PROCESSING, S.REQUIRES_CAPTURE, S.SUCCEEDED, S.REQUIRES_PAYMENT_METHOD, S.CANCELED}
    ),
    S.REQUIRES_ACTION: frozenset(
        {
            S.REQUIRES_CONFIRMATION,
            S.PROCESSING,
            S.REQUIRES_CAPTURE,
            S.SUCCEEDED,
            S.REQUIRES_PAYMENT_METHOD,
            S.CANCELED,
        }
    ),
    S.PROCESSING: frozenset({S.REQUIRES_CAPTURE, S.SUCCEEDED, S.REQUIRES_PAYMENT_METHOD, S.CANCELED}),
    S.REQUIRES_CAPTURE: frozenset({S.PROCESSING, S.SUCCEEDED, S.CANCELED}),
    # A failed attempt may still be retried by the processor with another
    # confirmation of the same intent (e.g. 3-D Secure retried).
    S.REQUIRES_PAYMENT_METHOD: frozenset(
        {S.REQUIRES_CONFIRMATION, S.REQUIRES_ACTION, S.PROCESSING, S.SUCCEEDED, S.CANCELED}
    ),
    S.SUCCEEDED: frozenset(),
    S.CANCELED: frozenset(),
}

PROCESSOR_STATUSES = frozenset(ALLOWED_TRANSITIONS) - {S.CREATED}


def can_transition(current: str, new: str) -> bool:
    return new in ALLOWED_TRANSITIONS.get(current, frozenset())


# Plain-language messages for patients. Every one says whether money moved.
DECLINE_MESSAGES: dict[str, str] = {
    "card_declined": "Your card was declined. You have not been charged. Please try another card or contact your bank.",
    "insufficient_funds": "Your card was declined for insufficient funds. You have not been charged.",
    "expired_card": "Your card has expired. You have not been charged. Please use another card.",
    "incorrect_cvc": "The security code (CVC) was not accepted. You have not been charged. Please check it and try again.",
    "incorrect_number": "The card number was not accepted. You have not been charged. Please check it and try again.",
    "processing_error": "Your bank could not process the card just now. You have not been charged. Please try again.",
    "payment_intent_authentication_failure": (
        "Your bank could not confirm it was you (3-D Secure). You have not been charged. "
        "Please try again or use another card."
    ),
    "card_check_refused": (
        "The card's security code or postal code did not match what your bank has on file. You have not been charged."
    ),
}
GENERIC_FAILURE_MESSAGE = "Your payment did not go through. You have not been charged. Please try again."
UNAVAILABLE_MESSAGE = (
    "The payment service is unavailable right now. You have not been charged. Please try again in a few minutes."
)


def decline_message(code: str, decline_code: str = "") -> str:
    return DECLINE_MESSAGES.get(decline_code) or DECLINE_MESSAGES.get(code) or GENERIC_FAILURE_MESSAGE
