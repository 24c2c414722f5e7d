"""Staff pages about patients and money: the patient list and search, recent
payments and a patient's ledger.

Routed from portal.urls_staff; reconciliation and refunds will join them.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.db.models import Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from audit.recorder import audit_record
from billing.access import access_patient_by_uuid, access_staff_payment_by_uuid
from billing.adjustment_models import Adjustment
from billing.forms import AdjustmentForm, PatientSearchForm, PaymentFilterForm
from billing.models import LedgerEntry, Patient, Statement
from billing.services.abandon import PaymentCancelFailed, PaymentNotCancelable, payment_staff_cancel
from billing.services.adjustments import adjustment_reasons_for
from billing.services.ledger import AWAITING_PATIENT_STATUSES, patient_balance
from billing.services.patient_search import patient_search, patients_newest_first
from billing.services.payment_search import PaymentFilters, payments_csv, payments_filtered
from portal.money import Money
from security.permissions import require_permission

PAYMENTS_PAGE_SIZE = 50
PATIENTS_PAGE_SIZE = 50
# Larger lists are refused with a message: narrow the filters.
PAYMENTS_EXPORT_LIMIT = 10_000
PAYMENT_FILTER_FIELDS = ("date_from", "date_to", "status", "amount_min", "amount_max", "statement", "last4", "channel")


def _shown_patients(page: Page[Patient]) -> list[str]:
    return [str(patient.public_id) for patient in page.object_list]


@require_permission("patients.view")
@require_http_methods(["GET", "POST"])
def patients(request: HttpRequest) -> HttpResponse:
    """Browse the clinic's patients (GET, newest first) or search them by an exact key (POST).

    A search is a POST so that names, emails and phones never appear in a URL
    (browser history, proxy and server logs). Both list PHI, so both are
    audited with the public ids of the rows shown (never the search text). An
    invalid search shows its errors and lists nothing.
    """
    tenant = request.tenant  # type: ignore[attr-defined]
    form = PatientSearchForm(request.POST if request.method == "POST" else None)
    context: dict[str, object] = {"form": form}
    if request.method == "POST" and not form.is_valid():
        return render(request, "billing/staff/patients.html", context)
    text = form.cleaned_data.get("q", "").strip() if form.is_bound else ""
    date_of_birth = form.cleaned_data.get("date_of_birth") if form.is_bound else None
    details: dict[str, object]
    if text or date_of_birth:
        search = patient_search(tenant=tenant, text=text, date_of_birth=date_of_birth)
        page = Paginator(search.patients, PATIENTS_PAGE_SIZE).get_page(request.POST.get("page"))
        action = "patient.searched"
        details = {
            "kinds": ",".join(search.kinds),
            "with_date_of_birth": date_of_birth is not None,
            "matches": len(search.patients),
            "truncated": search.truncated,
        }
        context.update(searching=True, search=search, truncated=search.truncated, matches=len(search.patients))
    else:
        page = Paginator(patients_newest_first(tenant=tenant), PATIENTS_PAGE_SIZE).get_page(request.GET.get("page"))
        action = "patient.list_viewed"
        details = {}
    details.update(page=page.number, patients=_shown_patients(page))
    audit_record(
        action=action,
        tenant=tenant,
        actor=request.user,
        actor_role=request.access.role,  # type: ignore[attr-defined]
        target_type="patient_list",
        request=request,
        details=details,
    )
    context["page"] = page
    return render(request, "billing/staff/patients.html", context)


def _filter_form(request: HttpRequest) -> PaymentFilterForm:
    # Bound only when some filter was given, so the bare list shows no errors.
    given = any(request.GET.get(name) for name in PAYMENT_FILTER_FIELDS)
    currency = request.tenant.currency  # type: ignore[attr-defined]
    return PaymentFilterForm(request.GET if given else None, currency=currency)


def _filters(form: PaymentFilterForm) -> PaymentFilters:
    return form.filters() if form.is_bound else PaymentFilters()


@require_permission("payments.view")
@require_GET
def payments(request: HttpRequest) -> HttpResponse:
    """The clinic's payments, filtered (a GET form: no filter is PHI) and paginated, newest first.

    An audited read naming the patients on the page. Invalid filters show
    their errors and list nothing.
    """
    tenant = request.tenant  # type: ignore[attr-defined]
    form = _filter_form(request)
    context: dict[str, object] = {
        "form": form,
        "filtered": form.is_bound,
        "awaiting_statuses": AWAITING_PATIENT_STATUSES,
    }
    if form.is_bound and not form.is_valid():
        return render(request, "billing/staff/payments.html", context)
    matching = payments_filtered(tenant=tenant, filters=_filters(form))
    page = Paginator(matching, PAYMENTS_PAGE_SIZE).get_page(request.GET.get("page"))
    audit_record(
        action="ledger.viewed",
        tenant=tenant,
        actor=request.user,
        actor_role=request.access.role,  # type: ignore[attr-defined]
        target_type="payment_list",
        request=request,
        details={"patients": sorted({str(p.patient.public_id) for p in page.object_list}), "page": page.number},
    )
    query = request.GET.copy()
    query.pop("page", None)
    context.update(page=page, payments=page.object_list, query=query.urlencode())
    return render(request, "billing/staff/payments.html", context)


@require_permission("payments.cancel")
@require_POST
def payment_cancel(request: HttpRequest, payment_id: UUID) -> HttpResponse:
    """Cancel a payment left waiting for the patient's 3-D Secure authentication."""
    tenant = request.tenant  # type: ignore[attr-defined]
    payment = access_staff_payment_by_uuid(tenant=tenant, uuid=payment_id)
    try:
        payment_staff_cancel(
            tenant=tenant,
            actor=request.user,  # type: ignore[arg-type]
            actor_role=request.access.role,  # type: ignore[attr-defined]
            payment=payment,
            request=request,
        )
    except PaymentNotCancelable:
        messages.error(request, f"The payment of {payment.amount} is not waiting for authentication. Nothing changed.")
    except PaymentCancelFailed:
        messages.error(
            request,
            f"The payment processor did not cancel the payment of {payment.amount}. Nothing changed; "
            "please try again in a few minutes.",
        )
    else:
        messages.success(
            request, f"The payment of {payment.amount} was canceled. The patient was not charged and can pay again."
        )
    return redirect("staff:payments")


@require_permission("payments.view")
@require_GET
def payments_export(request: HttpRequest) -> HttpResponse:
    """The filtered payment list as CSV (formula-safe cells), an audited read naming every patient in it.

    Refused with a message on the list page when the filters are invalid or
    match more than PAYMENTS_EXPORT_LIMIT payments.
    """
    tenant = request.tenant  # type: ignore[attr-defined]
    form = _filter_form(request)
    if form.is_bound and not form.is_valid():
        messages.error(request, "Fix the filters before downloading.")
        return redirect(f"{reverse('staff:payments')}?{request.GET.urlencode()}")
    rows = list(payments_filtered(tenant=tenant, filters=_filters(form))[: PAYMENTS_EXPORT_LIMIT + 1])
    if len(rows) > PAYMENTS_EXPORT_LIMIT:
        messages.error(request, f"More than {PAYMENTS_EXPORT_LIMIT:,} payments match: narrow the filters to download.")
        return redirect(f"{reverse('staff:payments')}?{request.GET.urlencode()}")
    audit_record(
        action="payment.list_exported",
        tenant=tenant,
        actor=request.user,
        actor_role=request.access.role,  # type: ignore[attr-defined]
        target_type="payment_list",
        request=request,
        details={"patients": sorted({str(p.patient.public_id) for p in rows}), "rows": len(rows)},
    )
    stamp = timezone.localtime(timezone=ZoneInfo(tenant.timezone)).strftime("%Y%m%d-%H%M")
    response = HttpResponse(payments_csv(tenant=tenant, payments=rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="payments-{stamp}.csv"'
    return response


def ledger_page(
    request: HttpRequest,
    patient: Patient,
    *,
    adjust_forms: dict[int, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    """A patient's ledger, their statements with their balances and (for ledger.adjust) an
    "Adjust balance" form each, and their adjustments. An audited read naming the patient.

    `adjust_forms` replaces the empty form of a statement (by its pk) with a bound one showing errors.
    """
    tenant = request.tenant  # type: ignore[attr-defined]
    access = request.access  # type: ignore[attr-defined]
    entries = list(LedgerEntry.objects.filter(tenant=tenant, patient=patient).select_related("statement", "payment"))
    audit_record(
        action="ledger.viewed",
        tenant=tenant,
        actor=request.user,
        actor_role=access.role,
        target_type="patient",
        target_id=str(patient.public_id),
        request=request,
    )
    can_adjust = "ledger.adjust" in access.permissions
    statements = list(
        Statement.objects.filter(tenant=tenant, patient=patient)
        .annotate(balance_minor=Coalesce(Sum("ledger_entries__amount_minor"), 0))
        .order_by("-statement_date", "-id")
    )
    reasons = adjustment_reasons_for(tenant=tenant, active_only=True) if can_adjust else []
    for statement in statements:
        statement.balance = Money(statement.balance_minor, statement.currency)  # type: ignore[attr-defined]
        if can_adjust:
            given = (adjust_forms or {}).get(statement.pk)
            statement.adjust_form = given or AdjustmentForm(  # type: ignore[attr-defined]
                reasons=reasons, currency=statement.currency, auto_id=f"adj-{statement.public_id}-%s"
            )
    adjustments = list(
        Adjustment.objects.filter(tenant=tenant, patient=patient)
        .select_related("statement", "reason", "requested_by", "decided_by")
        .order_by("-requested_at")[:50]
    )
    context = {
        "patient": patient,
        "entries": entries,
        "balance": patient_balance(patient=patient, currency=tenant.currency),
        "statements": statements,
        "can_adjust": can_adjust,
        "adjustments": adjustments,
    }
    return render(request, "billing/staff/patient_ledger.html", context, status=status)


@require_permission("patients.view")
@require_GET
def patient_ledger(request: HttpRequest, patient_id: UUID) -> HttpResponse:
    patient = access_patient_by_uuid(tenant=request.tenant, uuid=patient_id)  # type: ignore[attr-defined]
    return ledger_page(request, patient)
