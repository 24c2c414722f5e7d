"""Minimal staff pages: sign in, recent payments, a patient's ledger.

The full staff console (MFA, roles, reconciliation) builds on these.
"""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from audit.recorder import audit_record
from billing.access import access_patient_by_uuid
from billing.models import LedgerEntry, Payment
from billing.services.ledger import patient_balance
from security.permissions import TENANT_HOST, public_view, require_permission

PAYMENTS_PAGE_SIZE = 50

login = public_view(host=TENANT_HOST)(
    auth_views.LoginView.as_view(template_name="billing/staff/login.html", redirect_authenticated_user=True)
)
logout = public_view(host=TENANT_HOST)(auth_views.LogoutView.as_view(next_page="staff:login"))


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
        actor_role=request.membership.role,  # type: ignore[attr-defined]
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
        actor_role=request.membership.role,  # type: ignore[attr-defined]
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
