"""Processor webhooks: verify, store each event once, apply its effect.

The event record and its effect commit in one transaction; a duplicate
delivery hits the unique (tenant, event_id) index and changes nothing. The
payment's state comes from the PaymentIntent retrieved now, not from the
event body, so stale or out-of-order events cannot move it backwards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from uuid import UUID

from django.db import IntegrityError, transaction

from audit.recorder import audit_record
from billing.models import Payment, ProcessorAccount, ProcessorEvent
from billing.processor import ProcessorUnavailable, WebhookEvent, WebhookRejected, get_processor
from billing.services.disputes import dispute_apply
from billing.services.payments import IntentMismatch, payment_apply_intent, payment_sync
from billing.services.refunds import refund_apply, refund_for_processor_object
from portal.models import Tenant

logger = logging.getLogger(__name__)


class WebhookRetryLater(Exception):
    """We could not finish now (processor unreachable): answer 5xx so it is resent."""


@dataclass(frozen=True)
class WebhookResult:
    outcome: str  # applied | duplicate | ignored


def _payment_for(tenant: Tenant, event: WebhookEvent) -> Payment | None:
    by_intent = Payment.objects.filter(tenant=tenant, processor_payment_intent_id=event.object_id).first()
    if by_intent is not None:
        return by_intent
    # The intent may be unknown to us if the create call's answer was lost;
    # its metadata names our payment. Only trust it for this tenant.
    if event.metadata.get("settle_tenant") != str(tenant.public_id):
        return None
    try:
        payment_uuid = UUID(event.metadata.get("settle_payment", ""))
    except ValueError:
        return None
    return Payment.objects.filter(tenant=tenant, public_id=payment_uuid).first()


def _record(tenant: Tenant, event: WebhookEvent, payment: Payment | None, outcome: str) -> None:
    ProcessorEvent.objects.create(
        tenant=tenant, event_id=event.id, event_type=event.type[:64], payment=payment, outcome=outcome
    )
    audit_record(
        action="webhook.processed",
        tenant=tenant,
        actor_role="processor",
        target_type="payment" if payment else "",
        target_id=str(payment.public_id) if payment else "",
        details={"event_type": event.type[:64], "outcome": outcome},
    )


def webhook_receive(*, tenant: Tenant, payload: bytes, signature_header: str) -> WebhookResult:
    """Handle one delivery. Raises WebhookRejected (answer 400) or
    WebhookRetryLater (answer 503)."""
    account = ProcessorAccount.objects.filter(tenant=tenant).first()
    if account is None:
        raise WebhookRejected("tenant has no processor account")
    if not account.webhook_secret:
        # Until the clinic sets its signing secret, nothing can be verified:
        # an empty key would let anyone sign (HMAC with an empty key).
        raise WebhookRejected("tenant has no webhook signing secret")
    processor = get_processor(tenant)
    event = processor.parse_webhook(payload=payload, signature_header=signature_header, secret=account.webhook_secret)

    if ProcessorEvent.objects.filter(tenant=tenant, event_id=event.id).exists():
        return WebhookResult("duplicate")

    if event.object_type == "refund":
        return _refund_event(tenant, event)
    if event.object_type == "dispute":
        return _dispute_event(tenant, event)

    payment = _payment_for(tenant, event) if event.object_type == "payment_intent" else None
    if payment is None:
        try:
            with transaction.atomic():
                _record(tenant, event, None, "ignored")
        except IntegrityError:
            return WebhookResult("duplicate")
        return WebhookResult("ignored")

    try:
        intent = processor.retrieve_payment(event.object_id)
    except ProcessorUnavailable:
        raise WebhookRetryLater from None

    try:
        with transaction.atomic():
            # The payment row first, then the audit chain (as the checkout's own
            # answer takes them), so a racing answer and webhook cannot deadlock.
            payment_apply_intent(payment_id=payment.pk, intent=intent, source="webhook")
            _record(tenant, event, payment, "applied")
    except IntegrityError:
        return WebhookResult("duplicate")
    except IntentMismatch:
        logger.warning("webhook intent does not match its payment", extra={"payment": str(payment.public_id)})
        with transaction.atomic():
            _record(tenant, event, payment, "mismatch")
        return WebhookResult("ignored")
    # An authorisation waiting on our capture decision is finished outside
    # the event's transaction (it calls the processor).
    payment.refresh_from_db()
    if payment.status == "requires_capture":
        payment_sync(payment=payment, intent=intent, processor=processor, source="webhook")
    return WebhookResult("applied")


def _refund_event(tenant: Tenant, event: WebhookEvent) -> WebhookResult:
    """refund.created / refund.updated / refund.failed: apply the refund as the processor holds it now."""
    try:
        snapshot = get_processor(tenant).retrieve_refund(event.object_id)
    except ProcessorUnavailable:
        raise WebhookRetryLater from None
    refund = refund_for_processor_object(tenant=tenant, snapshot=snapshot)
    try:
        with transaction.atomic():
            if refund is None:
                _record(tenant, event, None, "ignored")
                return WebhookResult("ignored")
            # The refund row first, then the audit chain (as the synchronous answer
            # takes them), so a racing answer and webhook cannot deadlock.
            refund_apply(refund_id=refund.pk, snapshot=snapshot, source="webhook")
            _record(tenant, event, refund.payment, "applied")
    except IntegrityError:
        return WebhookResult("duplicate")
    return WebhookResult("applied")


def _dispute_event(tenant: Tenant, event: WebhookEvent) -> WebhookResult:
    """charge.dispute.*: apply the dispute as the processor holds it now."""
    try:
        snapshot = get_processor(tenant).retrieve_dispute(event.object_id)
    except ProcessorUnavailable:
        raise WebhookRetryLater from None
    try:
        with transaction.atomic():
            dispute = dispute_apply(tenant=tenant, snapshot=snapshot)
            payment = dispute.payment if dispute is not None else None
            _record(tenant, event, payment, "applied" if dispute is not None else "ignored")
    except IntegrityError:
        return WebhookResult("duplicate")
    return WebhookResult("applied" if dispute is not None else "ignored")
