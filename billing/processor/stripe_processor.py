"""Stripe through the official library.

Points at localstripe when settings.STRIPE_API_BASE is set (development and
tests); at Stripe itself otherwise. Each call uses the tenant's own secret
key through a per-call client, never the library's global key, so two
clinics' requests can never mix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import stripe
from django.conf import settings

from billing.processor.base import (
    CardDeclined,
    DisputeSnapshot,
    IntentSnapshot,
    ProcessorError,
    ProcessorUnavailable,
    RefundSnapshot,
    SetupSnapshot,
    WebhookEvent,
    WebhookRejected,
)

_EXPAND = ["latest_charge", "payment_method"]


def _as_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return obj
    return obj.to_dict()  # type: ignore[no-any-return]


def intent_snapshot_from_dict(data: Mapping[str, Any]) -> IntentSnapshot:
    """Reduce a PaymentIntent (with latest_charge and payment_method expanded
    where available) to the facts the billing services use."""
    charge = data.get("latest_charge")
    charge = charge if isinstance(charge, Mapping) else {}
    method = data.get("payment_method")
    method_id = method.get("id") if isinstance(method, Mapping) else method
    card_details = (charge.get("payment_method_details") or {}).get("card") or {}
    if not card_details and isinstance(method, Mapping):
        card_details = method.get("card") or {}
    checks = card_details.get("checks") or {}
    error = data.get("last_payment_error") or {}
    return IntentSnapshot(
        id=data["id"],
        status=data["status"],
        amount=int(data["amount"]),
        currency=str(data["currency"]).upper(),
        client_secret=data.get("client_secret") or "",
        payment_method_id=method_id,
        capture_method=data.get("capture_method") or "automatic",
        metadata=dict(data.get("metadata") or {}),
        card_brand=card_details.get("brand") or "",
        card_last4=card_details.get("last4") or "",
        card_exp_month=card_details.get("exp_month"),
        card_exp_year=card_details.get("exp_year"),
        cvc_check=checks.get("cvc_check"),
        postal_check=checks.get("address_postal_code_check"),
        failure_code=error.get("code") or "",
        decline_code=error.get("decline_code") or "",
    )


def _setup_snapshot(obj: Any) -> SetupSnapshot:
    data = _as_dict(obj)
    method = data.get("payment_method")
    return SetupSnapshot(
        id=data["id"],
        status=data["status"],
        client_secret=data.get("client_secret") or "",
        payment_method_id=method.get("id") if isinstance(method, Mapping) else method,
        metadata=dict(data.get("metadata") or {}),
    )


def refund_snapshot_from_dict(data: Mapping[str, Any]) -> RefundSnapshot:
    """Reduce a Stripe Refund object to the facts the refund services use."""
    intent = data.get("payment_intent")
    intent_id = intent.get("id") if isinstance(intent, Mapping) else intent
    return RefundSnapshot(
        id=str(data["id"]),
        status=str(data.get("status") or "pending"),
        amount=int(data["amount"]),
        currency=str(data["currency"]).upper(),
        payment_intent_id=str(intent_id or ""),
        metadata=dict(data.get("metadata") or {}),
        failure_reason=str(data.get("failure_reason") or ""),
    )


def dispute_snapshot_from_dict(data: Mapping[str, Any]) -> DisputeSnapshot:
    """Reduce a Stripe Dispute object to the facts the dispute services use."""
    intent = data.get("payment_intent")
    intent_id = intent.get("id") if isinstance(intent, Mapping) else intent
    evidence = data.get("evidence_details") or {}
    movements = []
    for txn in data.get("balance_transactions") or []:
        if isinstance(txn, Mapping):
            # Stripe reports the gross amount moved; a fee is separate (reconciliation counts it).
            movements.append(int(txn.get("amount", 0)))
    return DisputeSnapshot(
        id=str(data["id"]),
        status=str(data.get("status") or ""),
        amount=int(data["amount"]),
        currency=str(data["currency"]).upper(),
        payment_intent_id=str(intent_id or ""),
        reason=str(data.get("reason") or ""),
        evidence_due_by=evidence.get("due_by"),
        balance_movements=tuple(movements),
    )


class StripeProcessor:
    def __init__(self, *, secret_key: str, publishable_key: str) -> None:
        self.publishable_key = publishable_key
        base_addresses = {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else {}
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses=base_addresses,  # type: ignore[arg-type]
            http_client=stripe.new_default_http_client(timeout=settings.STRIPE_TIMEOUT_SECONDS),
            # Retries resend the same idempotency key, so they cannot double charge.
            max_network_retries=1,
        )

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except stripe.CardError as exc:
            error = (exc.json_body or {}).get("error", {}) if isinstance(exc.json_body, dict) else {}
            intent = error.get("payment_intent") or {}
            raise CardDeclined(
                code=exc.code or "card_declined",
                decline_code=error.get("decline_code") or "",
                payment_intent_id=intent.get("id") if isinstance(intent, Mapping) else None,
            ) from None
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise ProcessorUnavailable(type(exc).__name__) from None
        except stripe.APIError as exc:
            raise ProcessorUnavailable(f"processor error {exc.http_status}") from None
        except stripe.StripeError as exc:
            raise ProcessorError(f"{type(exc).__name__}: {exc.code or exc.http_status}") from None

    def create_setup_intent(self, *, metadata: Mapping[str, str], idempotency_key: str) -> SetupSnapshot:
        obj = self._call(
            self._client.v1.setup_intents.create,
            params={"payment_method_types": ["card"], "usage": "on_session", "metadata": dict(metadata)},
            options={"idempotency_key": idempotency_key},
        )
        return _setup_snapshot(obj)

    def retrieve_setup_intent(self, setup_intent_id: str) -> SetupSnapshot:
        return _setup_snapshot(self._call(self._client.v1.setup_intents.retrieve, setup_intent_id))

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
        obj = self._call(
            self._client.v1.payment_intents.create,
            params={
                "amount": amount,
                "currency": currency.lower(),
                "payment_method": payment_method_id,
                "payment_method_types": ["card"],
                "capture_method": capture_method,
                "confirm": True,
                "metadata": dict(metadata),
                "expand": _EXPAND,
            },
            options={"idempotency_key": idempotency_key},
        )
        return intent_snapshot_from_dict(_as_dict(obj))

    def retrieve_payment(self, payment_intent_id: str) -> IntentSnapshot:
        obj = self._call(self._client.v1.payment_intents.retrieve, payment_intent_id, params={"expand": _EXPAND})
        return intent_snapshot_from_dict(_as_dict(obj))

    def capture_payment(self, payment_intent_id: str, *, idempotency_key: str) -> IntentSnapshot:
        self._call(
            self._client.v1.payment_intents.capture, payment_intent_id, options={"idempotency_key": idempotency_key}
        )
        return self.retrieve_payment(payment_intent_id)

    def cancel_payment(self, payment_intent_id: str, *, idempotency_key: str) -> IntentSnapshot:
        self._call(
            self._client.v1.payment_intents.cancel, payment_intent_id, options={"idempotency_key": idempotency_key}
        )
        return self.retrieve_payment(payment_intent_id)

    def create_refund(
        self, *, payment_intent_id: str, amount: int, metadata: Mapping[str, str], idempotency_key: str
    ) -> RefundSnapshot:
        # Stripe's `reason` takes only its own three codes; ours stays on our side.
        obj = self._call(
            self._client.v1.refunds.create,
            params={"payment_intent": payment_intent_id, "amount": amount, "metadata": dict(metadata)},
            options={"idempotency_key": idempotency_key},
        )
        data = _as_dict(obj)
        if not data.get("payment_intent"):
            # localstripe leaves payment_intent empty when it was given one; we know it.
            data = {**data, "payment_intent": payment_intent_id}
        return refund_snapshot_from_dict(data)

    def retrieve_refund(self, refund_id: str) -> RefundSnapshot:
        return refund_snapshot_from_dict(_as_dict(self._call(self._client.v1.refunds.retrieve, refund_id)))

    def retrieve_dispute(self, dispute_id: str) -> DisputeSnapshot:
        return dispute_snapshot_from_dict(_as_dict(self._call(self._client.v1.disputes.retrieve, dispute_id)))

    def parse_webhook(self, *, payload: bytes, signature_header: str, secret: str) -> WebhookEvent:
        """Verify the Stripe-Signature on the raw body, then parse it."""
        try:
            text = payload.decode("utf-8")
            stripe.WebhookSignature.verify_header(
                text, signature_header, secret, tolerance=settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS
            )
            data = json.loads(text)
            obj = data["data"]["object"]
            return WebhookEvent(
                id=str(data["id"]),
                type=str(data["type"]),
                object_type=str(obj.get("object", "")),
                object_id=str(obj.get("id", "")),
                metadata=dict(obj.get("metadata") or {}),
            )
        except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
            raise WebhookRejected("invalid webhook") from None
