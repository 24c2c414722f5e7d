"""Billing background tasks. Thin: they take ids and call one service."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from billing.models import Payment, PaymentStatus
from billing.processor import ProcessorError, get_processor
from billing.services.payments import IntentMismatch, payment_sync
from portal.models import Tenant
from portal.tenancy.context import tenant_scope

logger = logging.getLogger(__name__)

# A payment still unsettled this long after its last change is retrieved.
STUCK_AFTER = timedelta(minutes=10)
STUCK_STATUSES = (
    PaymentStatus.CREATED,
    PaymentStatus.REQUIRES_CONFIRMATION,
    PaymentStatus.REQUIRES_ACTION,
    PaymentStatus.PROCESSING,
    PaymentStatus.REQUIRES_CAPTURE,
)


def payments_settle_stuck_for_tenant(*, tenant: Tenant, older_than: timedelta = STUCK_AFTER) -> int:
    """Retrieve every stuck payment of `tenant` and apply the processor's state.

    The fallback for a webhook that never came. Returns how many were checked.
    """
    cutoff = timezone.now() - older_than
    checked = 0
    with tenant_scope(tenant):
        stuck = Payment.objects.filter(
            status__in=STUCK_STATUSES, updated_at__lt=cutoff, processor_payment_intent_id__isnull=False
        ).order_by("updated_at")[:500]
        processor = get_processor(tenant) if stuck else None
        for payment in stuck:
            assert processor is not None
            try:
                intent = processor.retrieve_payment(payment.processor_payment_intent_id or "")
                payment_sync(payment=payment, intent=intent, processor=processor, source="sweep")
                checked += 1
            except (ProcessorError, IntentMismatch) as exc:
                logger.warning(
                    "stuck payment not settled", extra={"payment": str(payment.public_id), "error": str(exc)}
                )
    return checked


@shared_task(name="billing.tasks.payments_settle_stuck")
def payments_settle_stuck() -> int:
    total = 0
    for tenant in Tenant.objects.filter(is_active=True):
        total += payments_settle_stuck_for_tenant(tenant=tenant)
    return total
