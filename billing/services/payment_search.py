"""The staff payment list: filters, and the CSV of a filtered list.

Reads only (a selector); the view audits what it shows. Every filter is
optional; dates are the clinic's calendar days in its own time zone.
"""

from __future__ import annotations

import csv
import datetime
import io
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.db.models import Count, QuerySet

from billing.models import Payment, Statement
from portal.models import Tenant
from security.crypto.fields import blind_index_filter


@dataclass(frozen=True)
class PaymentFilters:
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None
    status: str = ""
    amount_min_minor: int | None = None
    amount_max_minor: int | None = None
    # As printed; matched exactly through the statement's blind index.
    statement_number: str = ""
    card_last4: str = ""
    channel: str = ""


def _day_start(day: datetime.date, zone: ZoneInfo) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time.min, tzinfo=zone)


def payments_filtered(*, tenant: Tenant, filters: PaymentFilters) -> QuerySet[Payment]:
    """The clinic's payments matching `filters`, newest first, with what the list shows joined."""
    payments = Payment.objects.filter(tenant=tenant)
    zone = ZoneInfo(tenant.timezone)
    if filters.date_from is not None:
        payments = payments.filter(created_at__gte=_day_start(filters.date_from, zone))
    if filters.date_to is not None:
        # Up to the end of that day in the clinic's zone: before the next day starts.
        payments = payments.filter(created_at__lt=_day_start(filters.date_to + datetime.timedelta(days=1), zone))
    if filters.status:
        payments = payments.filter(status=filters.status)
    if filters.amount_min_minor is not None:
        payments = payments.filter(amount_minor__gte=filters.amount_min_minor)
    if filters.amount_max_minor is not None:
        payments = payments.filter(amount_minor__lte=filters.amount_max_minor)
    if filters.statement_number:
        statements = Statement.objects.filter(
            blind_index_filter(
                tenant_id=tenant.pk, model=Statement, field_name="number_index", values=[filters.statement_number]
            )
        )
        payments = payments.filter(statement__in=statements)
    if filters.card_last4:
        payments = payments.filter(card_last4=filters.card_last4)
    if filters.channel:
        payments = payments.filter(channel=filters.channel)
    return (
        payments.select_related("statement", "patient")
        .annotate(dispute_count=Count("disputes"))
        .order_by("-created_at", "-id")
    )


# A spreadsheet runs a cell that starts with one of these as a formula
# (OWASP "CSV injection"); tab and carriage return start one too in some.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

CSV_HEADER = (
    "Date",
    "Receipt",
    "Patient",
    "Statement",
    "Amount",
    "Currency",
    "Status",
    "Channel",
    "Card brand",
    "Card last 4",
    "Payment id",
)


def csv_cell(value: object) -> str:
    """`value` as text a spreadsheet shows as text: a formula start gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def payments_csv(*, tenant: Tenant, payments: Iterable[Payment]) -> str:
    """The payments as CSV, one row each, dates in the clinic's time zone, every cell formula-safe."""
    zone = ZoneInfo(tenant.timezone)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for p in payments:
        row = (
            p.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            p.receipt_number,
            p.patient.listed_name,
            p.statement.number,
            p.amount.input_value(),
            p.currency,
            p.get_status_display(),
            p.get_channel_display(),
            p.card_brand,
            p.card_last4,
            p.public_id,
        )
        writer.writerow([csv_cell(cell) for cell in row])
    return out.getvalue()
