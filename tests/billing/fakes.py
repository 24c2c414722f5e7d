"""A scripted processor for tests that need outcomes localstripe cannot give
(CVC/postal check failures, outages, races). Webhook signatures are verified
by the real Stripe implementation."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from billing.processor import (
    CardDeclined,
    DisputeSnapshot,
    IntentSnapshot,
    ProcessorError,
    ProcessorUnavailable,
    RefundSnapshot,
    SetupSnapshot,
    WebhookEvent,
)
from billing.processor.stripe_processor import StripeProcessor


@dataclass
class FakeProcessor:
    publishable_key: str = "pk_test_fake"
    # What the next create_payment does: "succeed", "decline", "unavailable", "requires_action", "processing".
    create_outcome: str = "succeed"
    cvc_check: str | None = "pass"
    postal_check: str | None = "pass"
    create_delay: float = 0.0
    setup_unavailable: bool = False
    retrieve_unavailable: bool = False
    # What the next create_refund does: "succeed", "pending", "fail", "refuse", "unavailable".
    refund_outcome: str = "succeed"
    refund_delay: float = 0.0
    refunds: dict[str, RefundSnapshot] = field(default_factory=dict)
    disputes: dict[str, DisputeSnapshot] = field(default_factory=dict)
    # Raised by the next cancel_payment calls instead of canceling (e.g. ProcessorUnavailable).
    cancel_error: Exception | None = None
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    intents: dict[str, IntentSnapshot] = field(default_factory=dict)
    setups: dict[str, SetupSnapshot] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counter: int = 0

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            self._counter += 1
            return f"{prefix}_fake{self._counter:04d}"

    def calls_named(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for call, kwargs in self.calls if call == name]

    # --- SetupIntents -------------------------------------------------------
    def create_setup_intent(self, *, metadata: Mapping[str, str], idempotency_key: str) -> SetupSnapshot:
        self.calls.append(("create_setup_intent", {"metadata": dict(metadata), "idempotency_key": idempotency_key}))
        if self.setup_unavailable:
            raise ProcessorUnavailable("down")
        setup_id = self._next_id("seti")
        snapshot = SetupSnapshot(
            id=setup_id,
            status="requires_payment_method",
            client_secret=f"{setup_id}_secret_x",
            payment_method_id=None,
            metadata=dict(metadata),
        )
        self.setups[setup_id] = snapshot
        return snapshot

    def complete_setup(self, setup_id: str) -> str:
        """What Stripe.js does in the browser: attach a card to the SetupIntent."""
        method_id = self._next_id("pm")
        self.setups[setup_id] = replace(self.setups[setup_id], status="succeeded", payment_method_id=method_id)
        return method_id

    def retrieve_setup_intent(self, setup_intent_id: str) -> SetupSnapshot:
        self.calls.append(("retrieve_setup_intent", {"id": setup_intent_id}))
        return self.setups[setup_intent_id]

    # --- PaymentIntents -----------------------------------------------------
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
        params = {
            "amount": amount,
            "currency": currency,
            "payment_method_id": payment_method_id,
            "capture_method": capture_method,
            "metadata": dict(metadata),
            "idempotency_key": idempotency_key,
        }
        self.calls.append(("create_payment", params))
        if self.create_delay:
            time.sleep(self.create_delay)
        if self.create_outcome == "unavailable":
            raise ProcessorUnavailable("timeout")
        if self.create_outcome == "decline":
            raise CardDeclined(code="card_declined", decline_code="insufficient_funds")
        status = {
            "succeed": "requires_capture" if capture_method == "manual" else "succeeded",
            "requires_action": "requires_action",
            "processing": "processing",
        }[self.create_outcome]
        intent = IntentSnapshot(
            id=self._next_id("pi"),
            status=status,
            amount=amount,
            currency=currency,
            client_secret="pi_secret_fake",
            payment_method_id=payment_method_id,
            capture_method=capture_method,
            metadata=dict(metadata),
            card_brand="visa",
            card_last4="4242",
            card_exp_month=12,
            card_exp_year=2030,
            cvc_check=self.cvc_check,
            postal_check=self.postal_check,
        )
        self.intents[intent.id] = intent
        return intent

    def set_intent_status(self, intent_id: str, status: str, **changes: Any) -> IntentSnapshot:
        self.intents[intent_id] = replace(self.intents[intent_id], status=status, **changes)
        return self.intents[intent_id]

    def retrieve_payment(self, payment_intent_id: str) -> IntentSnapshot:
        self.calls.append(("retrieve_payment", {"id": payment_intent_id}))
        if self.retrieve_unavailable:
            raise ProcessorUnavailable("down")
        return self.intents[payment_intent_id]

    def capture_payment(self, payment_intent_id: str, *, idempotency_key: str) -> IntentSnapshot:
        self.calls.append(("capture_payment", {"id": payment_intent_id, "idempotency_key": idempotency_key}))
        return self.set_intent_status(payment_intent_id, "succeeded")

    def cancel_payment(self, payment_intent_id: str, *, idempotency_key: str) -> IntentSnapshot:
        self.calls.append(("cancel_payment", {"id": payment_intent_id, "idempotency_key": idempotency_key}))
        if self.cancel_error is not None:
            raise self.cancel_error
        return self.set_intent_status(payment_intent_id, "canceled")

    # --- Refunds ------------------------------------------------------------
    def create_refund(
        self, *, payment_intent_id: str, amount: int, metadata: Mapping[str, str], idempotency_key: str
    ) -> RefundSnapshot:
        params = {
            "payment_intent_id": payment_intent_id,
            "amount": amount,
            "metadata": dict(metadata),
            "idempotency_key": idempotency_key,
        }
        self.calls.append(("create_refund", params))
        if self.refund_delay:
            time.sleep(self.refund_delay)
        if self.refund_outcome == "unavailable":
            raise ProcessorUnavailable("timeout")
        if self.refund_outcome == "refuse":
            raise ProcessorError("InvalidRequestError: charge_already_refunded")
        with self._lock:
            # The processor dedupes on the idempotency key, as Stripe does.
            for existing in self.refunds.values():
                if existing.metadata.get("idempotency_key") == idempotency_key:
                    return existing
        status = {"succeed": "succeeded", "pending": "pending", "fail": "failed"}[self.refund_outcome]
        refund = RefundSnapshot(
            id=self._next_id("re"),
            status=status,
            amount=amount,
            currency=self.intents[payment_intent_id].currency if payment_intent_id in self.intents else "USD",
            payment_intent_id=payment_intent_id,
            metadata={**dict(metadata), "idempotency_key": idempotency_key},
            failure_reason="expired_or_canceled_card" if status == "failed" else "",
        )
        self.refunds[refund.id] = refund
        return refund

    def set_refund_status(self, refund_id: str, status: str, **changes: Any) -> RefundSnapshot:
        self.refunds[refund_id] = replace(self.refunds[refund_id], status=status, **changes)
        return self.refunds[refund_id]

    def retrieve_refund(self, refund_id: str) -> RefundSnapshot:
        self.calls.append(("retrieve_refund", {"id": refund_id}))
        if self.retrieve_unavailable:
            raise ProcessorUnavailable("down")
        return self.refunds[refund_id]

    # --- Disputes (raised by the card network; tests script them) ------------
    def open_dispute(self, payment_intent_id: str, amount: int, **changes: Any) -> DisputeSnapshot:
        dispute = DisputeSnapshot(
            id=self._next_id("dp"),
            status="needs_response",
            amount=amount,
            currency="USD",
            payment_intent_id=payment_intent_id,
            reason="fraudulent",
            evidence_due_by=int(time.time()) + 7 * 86_400,
        )
        self.disputes[dispute.id] = replace(dispute, **changes)
        return self.disputes[dispute.id]

    def set_dispute(self, dispute_id: str, **changes: Any) -> DisputeSnapshot:
        self.disputes[dispute_id] = replace(self.disputes[dispute_id], **changes)
        return self.disputes[dispute_id]

    def retrieve_dispute(self, dispute_id: str) -> DisputeSnapshot:
        self.calls.append(("retrieve_dispute", {"id": dispute_id}))
        if self.retrieve_unavailable:
            raise ProcessorUnavailable("down")
        return self.disputes[dispute_id]

    def parse_webhook(self, *, payload: bytes, signature_header: str, secret: str) -> WebhookEvent:
        real = StripeProcessor.__new__(StripeProcessor)
        return StripeProcessor.parse_webhook(real, payload=payload, signature_header=signature_header, secret=secret)
