"""The staff dashboard: the first page after signing in, one card per section the role may use.

Figures only (counts and totals), no patient named, so opening the dashboard
is not a read of PHI and is not audited as one.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from billing.models import Payment, PaymentStatus
from billing.services.disputes import disputes_open_count
from portal.models import Tenant
from portal.money import Money
from security.permissions import require_permission
from security.team import team_summary


def _today_start(tenant: Tenant) -> datetime:
    zone = ZoneInfo(tenant.timezone)
    return datetime.combine(timezone.now().astimezone(zone).date(), time.min, tzinfo=zone)


def payments_today(tenant: Tenant) -> dict[str, Any]:
    since = _today_start(tenant)
    rows = Payment.objects.filter(tenant=tenant, created_at__gte=since)
    succeeded = rows.filter(status=PaymentStatus.SUCCEEDED).aggregate(n=Count("pk"), total=Sum("amount_minor"))
    return {
        "succeeded": succeeded["n"] or 0,
        "collected": Money(succeeded["total"] or 0, tenant.currency),
        "failed": rows.filter(status=PaymentStatus.REQUIRES_PAYMENT_METHOD).count(),
        "flagged": rows.filter(flagged=True).count(),
    }


@require_permission("dashboard.view")
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    permissions = request.access.permissions  # type: ignore[attr-defined]
    context: dict[str, Any] = {}
    if "payments.view" in permissions:
        context["payments_today"] = payments_today(tenant)
    if "disputes.manage" in permissions:
        context["disputes_open"] = disputes_open_count(tenant=tenant)
    if "staff.manage" in permissions:
        context["team"] = team_summary(tenant=tenant)
    return render(request, "portal/dashboard.html", context)
