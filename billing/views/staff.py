"""Staff pages about money: recent payments and a patient's ledger.

Routed from portal.urls_staff; reconciliation and refunds will join them.
"""

from __future__ import annotations

from uuid import UUID

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from audit.recorder import audit_record
from billing.access import access_patient_by_uuid
from billing.models import LedgerEntry, Payment
from billing.services.ledger import patient_balance
from security.permissions import require_permission

PAYMENTS_PAGE_SIZE = 50


@require_permission("payments.view")
@require_GET
def payments(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    rows = list(
        Payment.objects.filter(tenant=tenant)
        .select_related("statement", "patient")
        .order_by("-created_at")[:PAYMENTS_PAGE_SIZE]
    )
    audit_record(
        action="ledger.viewed",
        tenant=tenant,
        actor=request.user,
        actor_role=request.access.role,  # type: ignore[attr-defined]
        target_type="payment_list",
        request=request,
        details={"patients": sorted({str(p.patient.public_id) for p in rows})},
    )
    return render(request, "billing/staff/payments.html", {"payments": rows})


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
