"""Staff pages about patients and money: the patient list and search, recent
payments and a patient's ledger.

Routed from portal.urls_staff; reconciliation and refunds will join them.
"""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from audit.recorder import audit_record
from billing.access import access_patient_by_uuid, access_staff_payment_by_uuid
from billing.forms import PatientSearchForm
from billing.models import LedgerEntry, Patient, Payment
from billing.services.abandon import PaymentCancelFailed, PaymentNotCancelable, payment_staff_cancel
from billing.services.ledger import AWAITING_PATIENT_STATUSES, patient_balance
from billing.services.patient_search import patient_search, patients_newest_first
from security.permissions import require_permission

PAYMENTS_PAGE_SIZE = 50
PATIENTS_PAGE_SIZE = 50


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


@require_permission("payments.view")
@require_GET
def payments(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    newest_first = (
        Payment.objects.filter(tenant=tenant)
        .select_related("statement", "patient")
        .annotate(dispute_count=Count("disputes"))
        .order_by("-created_at", "-pk")
    )
    page = Paginator(newest_first, PAYMENTS_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    audit_record(
        action="ledger.viewed",
        tenant=tenant,
        actor=request.user,
        actor_role=request.access.role,  # type: ignore[attr-defined]
        target_type="payment_list",
        request=request,
        details={"patients": sorted({str(p.patient.public_id) for p in rows}), "page": page.number},
    )
    context = {"payments": rows, "page": page, "awaiting_statuses": AWAITING_PATIENT_STATUSES}
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


@require_permission("patients.view")
@require_GET
def patient_ledger(request: HttpRequest, patient_id: UUID) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    patient = access_patient_by_uuid(tenant=tenant, uuid=patient_id)
    entries = list(LedgerEntry.objects.filter(tenant=tenant, patient=patient).select_related("statement", "payment"))
    audit_record(
        action="ledger.viewed",
        tenant=tenant,
        actor=request.user,
        actor_role=request.access.role,  # type: ignore[attr-defined]
        target_type="patient",
        target_id=str(patient.public_id),
        request=request,
    )
    context = {
        "patient": patient,
        "entries": entries,
        "balance": patient_balance(patient=patient, currency=tenant.currency),
    }
    return render(request, "billing/staff/patient_ledger.html", context)
