"""Settle payments whose webhook never came, and release abandoned ones."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from billing.models import Payment, PaymentStatus
from billing.processor import ProcessorError, get_processor
from billing.services.abandon import payment_release
from billing.services.ledger import AWAITING_PATIENT_STATUSES
from billing.services.payments import IntentMismatch, payment_sync
from portal.models import Tenant
from portal.tenancy.context import tenant_scope

logger = logging.getLogger(__name__)

# A payment still unsettled this long after its last change is retrieved.
STUCK_AFTER = timedelta(minutes=10)
# An attempt still waiting for the patient (3-D Secure never finished) this
# long after it began is canceled at the processor, so an old tab can no
# longer confirm it. (It holds no part of the balance meanwhile.)
ABANDONED_AFTER = timedelta(hours=1)
STUCK_STATUSES = (
    PaymentStatus.CREATED,
    PaymentStatus.REQUIRES_CONFIRMATION,
    PaymentStatus.REQUIRES_ACTION,
    PaymentStatus.PROCESSING,
    PaymentStatus.REQUIRES_CAPTURE,
)
WAITING_FOR_PATIENT = AWAITING_PATIENT_STATUSES


def payments_settle_stuck_for_tenant(
    *, tenant: Tenant, older_than: timedelta = STUCK_AFTER, abandoned_after: timedelta = ABANDONED_AFTER
) -> int:
    """Retrieve every stuck payment of `tenant` and apply the processor's state.

    The fallback for a webhook that never came; an attempt still waiting for
    the patient after `abandoned_after` is canceled at the processor. Returns
    how many payments were checked. Processor errors are logged and retried
    on the next run.
    """
    now = timezone.now()
    checked = 0
    with tenant_scope(tenant):
        stuck = list(
            Payment.objects.filter(
                status__in=STUCK_STATUSES,
                updated_at__lt=now - older_than,
                processor_payment_intent_id__isnull=False,
            ).order_by("updated_at")[:500]
        )
        processor = get_processor(tenant) if stuck else None
        for payment in stuck:
            intent_id = payment.processor_payment_intent_id
            assert processor is not None and intent_id
            try:
                intent = processor.retrieve_payment(intent_id)
                payment = payment_sync(payment=payment, intent=intent, processor=processor, source="sweep")
                if payment.status in WAITING_FOR_PATIENT and payment.created_at < now - abandoned_after:
                    payment_release(payment=payment, processor=processor, reason="abandoned", source="sweep")
                checked += 1
            except (ProcessorError, IntentMismatch) as exc:
                logger.warning(
                    "stuck payment not settled", extra={"payment": str(payment.public_id), "error": str(exc)}
                )
    return checked
