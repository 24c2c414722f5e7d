"""Selectors: per-clinic key figures for the platform console.

Counts and totals only, no patient named, so the console's clinic list is
not a read of PHI. One grouped query per figure for all clinics shown,
whatever their number, run in the platform scope (the operator's deliberate
cross-tenant read; opening the list is not audited because it reveals no
clinic's records).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Sum
from django.utils import timezone

from billing.models import LedgerEntry, Patient, Payment, PaymentStatus
from portal.models import Tenant
from portal.money import Money
from portal.tenancy.context import platform_scope

RECENT_DAYS = 30


@dataclass(frozen=True)
class ClinicFigures:
    patients: int
    # What patients owe the clinic now: the sum of every ledger entry (charges
    # and refunds positive, payments and adjustments down negative).
    open_balance: Money
    payments_recent: int  # succeeded in the last RECENT_DAYS days
    collected_recent: Money


def clinic_figures(*, tenants: list[Tenant]) -> dict[int, ClinicFigures]:
    """Key figures per clinic pk for `tenants` (zero figures for a clinic with no rows)."""
    ids = [tenant.pk for tenant in tenants]
    since = timezone.now() - timedelta(days=RECENT_DAYS)
    with platform_scope():
        patients = dict(
            Patient.objects.filter(tenant_id__in=ids).values_list("tenant_id").annotate(n=Count("pk")).order_by()
        )
        balances = dict(
            LedgerEntry.objects.filter(tenant_id__in=ids)
            .values_list("tenant_id")
            .annotate(total=Sum("amount_minor"))
            .order_by()
        )
        recent: dict[int, tuple[int, int]] = {
            row["tenant_id"]: (row["n"], row["total"] or 0)
            for row in Payment.objects.filter(
                tenant_id__in=ids, status=PaymentStatus.SUCCEEDED, succeeded_at__gte=since
            )
            .values("tenant_id")
            .annotate(n=Count("pk"), total=Sum("amount_minor"))
            .order_by()
        }
    figures: dict[int, ClinicFigures] = {}
    for tenant in tenants:
        count, total = recent.get(tenant.pk, (0, 0))
        figures[tenant.pk] = ClinicFigures(
            patients=patients.get(tenant.pk, 0),
            open_balance=Money(balances.get(tenant.pk) or 0, tenant.currency),
            payments_recent=count,
            collected_recent=Money(total, tenant.currency),
        )
    return figures
