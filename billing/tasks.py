"""Billing background tasks. Thin: they take ids and call one service."""

from __future__ import annotations

from celery import shared_task

from billing.services.refunds import refunds_settle_stuck_for_tenant
from billing.services.sweep import payments_settle_stuck_for_tenant
from portal.models import Tenant


@shared_task(name="billing.tasks.payments_settle_stuck")
def payments_settle_stuck() -> int:
    """Beat: settle every active clinic's stuck payments (billing.services.sweep)."""
    total = 0
    for tenant in Tenant.objects.filter(is_active=True):
        total += payments_settle_stuck_for_tenant(tenant=tenant)
    return total


@shared_task(name="billing.tasks.refunds_settle_stuck")
def refunds_settle_stuck() -> int:
    """Beat: finish every active clinic's refunds still processing (billing.services.refunds)."""
    total = 0
    for tenant in Tenant.objects.filter(is_active=True):
        total += refunds_settle_stuck_for_tenant(tenant=tenant)
    return total


@shared_task(name="billing.tasks.statement_import_run")
def statement_import_run(job_id: int) -> str:
    """Run a queued statement import (billing.services.statement_import)."""
    from billing.services.statement_import import import_job_run

    return import_job_run(job_id=job_id)
