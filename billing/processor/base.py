"""What the billing services need from a card processor.

Values cross this boundary as small frozen snapshots, never as the
processor library's own objects, so services and tests do not depend on
Stripe's types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class ProcessorError(Exception):
    """The processor refused the request for a reason that is not the card's."""


class ProcessorUnavailable(ProcessorError):
    """The processor could not be reached or did not answer. Nothing is known
    to have been charged; retrying with the same idempotency key is safe."""


class CardDeclined(ProcessorError):
    def __init__(self, code: str, decline_code: str = "", payment_intent_id: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.decline_code = decline_code
        self.payment_intent_id = payment_intent_id


class ProcessorKeyRefused(ProcessorError):
    """The processor refused the secret key: unknown, revoked, or lacking permission.

    `reason` is "authentication" (no such key) or "permission" (a restricted
    key without the access the check needs).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EndpointApiUnavailable(ProcessorError):
    """Webhook endpoints cannot be registered through the processor's API here
    (localstripe does not implement it; a restricted key may lack the
    permission). The admin registers the endpoint by hand instead."""


class WebhookRejected(Exception):
    """Malformed, unsigned, badly signed or stale webhook payload."""


@dataclass(frozen=True)
class SetupSnapshot:
    id: str
    status: str
    client_secret: str
    payment_method_id: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IntentSnapshot:
    """The processor's current view of one PaymentIntent."""

    id: str
    status: str
    amount: int
    currency: str  # upper case ISO 4217
    client_secret: str
    payment_method_id: str | None
    capture_method: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    card_brand: str = ""
    card_last4: str = ""
    card_exp_month: int | None = None
    card_exp_year: int | None = None
    # None when the processor reported no result for the check.
    cvc_check: str | None = None
    postal_check: str | None = None
    failure_code: str = ""
    decline_code: str = ""


@dataclass(frozen=True)
class RefundSnapshot:
    """The processor's current view of one refund."""

    id: str
    status: str  # pending | requires_action | succeeded | failed | canceled
    amount: int
    currency: str  # upper case ISO 4217
    payment_intent_id: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    failure_reason: str = ""


@dataclass(frozen=True)
class DisputeSnapshot:
    """The processor's current view of one dispute (chargeback)."""

    id: str
    status: str  # warning_needs_response | needs_response | under_review | won | lost | ...
    amount: int
    currency: str  # upper case ISO 4217
    payment_intent_id: str
    reason: str = ""
    evidence_due_by: int | None = None  # Unix time
    # Net amounts the dispute moved at the processor, in order: negative when
    # funds were withdrawn, positive when reinstated.
    balance_movements: tuple[int, ...] = ()


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    type: str
    object_type: str
    object_id: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AccountCheck:
    """What the processor says about the account a secret key belongs to."""

    livemode: bool


@dataclass(frozen=True)
class EndpointSnapshot:
    """A webhook endpoint the processor registered; `secret` signs its deliveries."""

    id: str
    url: str
    secret: str


class ProcessorAdmin(Protocol):
    """Account-level calls made with a secret key before it is saved (clinic settings)."""

    def check_account(self) -> AccountCheck:
        """Prove the key works: raises ProcessorKeyRefused or ProcessorUnavailable."""
        ...

    def create_webhook_endpoint(self, *, url: str, events: Sequence[str], description: str) -> EndpointSnapshot:
        """Register `url` for `events`; raises EndpointApiUnavailable when the API cannot."""
        ...

    def delete_webhook_endpoint(self, endpoint_id: str) -> None:
        """Delete an endpoint this clinic registered before; raises ProcessorError when it cannot."""
        ...


class Processor(Protocol):
    publishable_key: str

    def create_setup_intent(self, *, metadata: Mapping[str, str], idempotency_key: str) -> SetupSnapshot: ...

    def retrieve_setup_intent(self, setup_intent_id: str) -> SetupSnapshot: ...

    def create_payment(
        self,
        *,
        amount: int,
        currency: str,
        payment_method_id: str,
        capture_method: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> IntentSnapshot:
        """Create and confirm a PaymentIntent in one call.

        Raises CardDeclined when the card is declined, ProcessorUnavailable
        when the processor cannot be reached.
        """
        ...

    def retrieve_payment(self, payment_intent_id: str) -> IntentSnapshot: ...

    def capture_payment(self, payment_intent_id: str, *, idempotency_key: str) -> IntentSnapshot: ...

    def cancel_payment(self, payment_intent_id: str, *, idempotency_key: str) -> IntentSnapshot: ...

    def create_refund(
        self, *, payment_intent_id: str, amount: int, metadata: Mapping[str, str], idempotency_key: str
    ) -> RefundSnapshot:
        """Refund `amount` of a succeeded PaymentIntent. Raises ProcessorError when
        refused, ProcessorUnavailable when the processor cannot be reached."""
        ...

    def retrieve_refund(self, refund_id: str) -> RefundSnapshot: ...

    def retrieve_dispute(self, dispute_id: str) -> DisputeSnapshot: ...

    def parse_webhook(self, *, payload: bytes, signature_header: str, secret: str) -> WebhookEvent: ...
