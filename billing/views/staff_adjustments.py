"""Staff pages for balance adjustments: the form on the patient ledger, approve and
reject (on the approvals page, billing.views.staff_refunds.refund_queue), and the
clinic's reason list.

Routed from portal.urls_staff. Thin: forms validate, billing.services.adjustments decides.
"""

from __future__ import annotations

from uuid import UUID

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from audit.recorder import audit_record
from billing.access import access_statement_by_uuid
from billing.adjustment_models import Adjustment, AdjustmentReason, AdjustmentStatus
from billing.forms import AdjustmentForm, RejectForm
from billing.services.adjustments import (
    REASON_LABEL_MAX_LENGTH,
    AdjustmentError,
    adjustment_approve,
    adjustment_reason_add,
    adjustment_reason_set_active,
    adjustment_reasons_for,
    adjustment_reject,
    adjustment_request,
)
from billing.views.staff import ledger_page
from portal.models import Tenant
from security.permissions import require_permission


class ReasonAddForm(forms.Form):
    label = forms.CharField(label="New reason", max_length=REASON_LABEL_MAX_LENGTH)


def access_adjustment_by_uuid(*, tenant: Tenant, uuid: UUID) -> Adjustment:
    """An adjustment of this clinic; 404 for missing and another clinic's alike."""
    adjustment = Adjustment.objects.select_related("patient", "statement").filter(tenant=tenant, public_id=uuid).first()
    if adjustment is None:
        raise Http404
    return adjustment


def access_adjustment_reason_by_uuid(*, tenant: Tenant, uuid: UUID) -> AdjustmentReason:
    """A reason of this clinic's list; 404 for missing and another clinic's alike."""
    reason = AdjustmentReason.objects.filter(tenant=tenant, public_id=uuid).first()
    if reason is None:
        raise Http404
    return reason


def _described(adjustment: Adjustment) -> str:
    verb = "lower" if adjustment.lowers_balance else "raise"
    return f"{verb} statement {adjustment.statement.number} by {adjustment.magnitude}"


@require_permission("ledger.adjust")
@require_POST
def adjustment_create(request: HttpRequest, statement_id: UUID) -> HttpResponse:
    """Adjust one statement's balance: applied at once within the role's limit, else it waits for approval."""
    tenant = request.tenant  # type: ignore[attr-defined]
    statement = access_statement_by_uuid(tenant=tenant, uuid=statement_id)
    reasons = adjustment_reasons_for(tenant=tenant, active_only=True)
    form = AdjustmentForm(
        request.POST, reasons=reasons, currency=statement.currency, auto_id=f"adj-{statement.public_id}-%s"
    )
    if not form.is_valid():
        return ledger_page(request, statement.patient, adjust_forms={statement.pk: form}, status=400)
    try:
        outcome = adjustment_request(
            tenant=tenant,
            actor=request.user,
            actor_role=request.access.role,  # type: ignore[attr-defined]
            statement=statement,
            amount=form.signed_amount(),
            reason=form.cleaned_data["reason"],
            note=form.cleaned_data["note"],
            request=request,
        )
    except AdjustmentError as error:
        form.add_error("amount", str(error))
        return ledger_page(request, statement.patient, adjust_forms={statement.pk: form}, status=400)
    what = _described(outcome.adjustment)
    if outcome.applied:
        messages.success(request, f"Done: {what}.")
    else:
        messages.info(request, f"Requested: {what}. It is above your limit and waits for approval.")
    return redirect("staff:patient-ledger", patient_id=statement.patient.public_id)


def pending_adjustments(request: HttpRequest) -> dict[str, object]:
    """The approvals page's adjustment sections (for ledger.adjust_approve), audited as a read naming patients."""
    tenant = request.tenant  # type: ignore[attr-defined]
    related = ("patient", "statement", "reason", "requested_by", "decided_by")
    pending = list(
        Adjustment.objects.filter(tenant=tenant, status=AdjustmentStatus.PENDING_APPROVAL)
        .select_related(*related)
        .order_by("requested_at")
    )
    recent = list(
        Adjustment.objects.filter(tenant=tenant)
        .exclude(status=AdjustmentStatus.PENDING_APPROVAL)
        .select_related(*related)
        .order_by("-requested_at")[:20]
    )
    audit_record(
        action="adjustment.queue_viewed",
        tenant=tenant,
        actor=request.user,
        actor_role=request.access.role,  # type: ignore[attr-defined]
        target_type="adjustment_list",
        request=request,
        details={"patients": sorted({str(a.patient.public_id) for a in pending + recent})},
    )
    return {"pending_adjustments": pending, "recent_adjustments": recent}


@require_permission("ledger.adjust_approve")
@require_POST
def adjustment_approve_view(request: HttpRequest, adjustment_id: UUID) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    adjustment = access_adjustment_by_uuid(tenant=tenant, uuid=adjustment_id)
    try:
        adjustment_approve(
            tenant=tenant,
            actor=request.user,
            actor_role=request.access.role,  # type: ignore[attr-defined]
            adjustment=adjustment,
            request=request,
        )
    except AdjustmentError as error:
        messages.error(request, str(error))
        return redirect("staff:refunds")
    messages.success(request, f"Approved: {_described(adjustment)}.")
    return redirect("staff:refunds")


@require_permission("ledger.adjust_approve")
@require_POST
def adjustment_reject_view(request: HttpRequest, adjustment_id: UUID) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    adjustment = access_adjustment_by_uuid(tenant=tenant, uuid=adjustment_id)
    form = RejectForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say why the adjustment is rejected; the requester sees it.")
        return redirect("staff:refunds")
    try:
        adjustment_reject(
            tenant=tenant,
            actor=request.user,
            actor_role=request.access.role,  # type: ignore[attr-defined]
            adjustment=adjustment,
            reason=form.cleaned_data["reason"],
            request=request,
        )
    except AdjustmentError as error:
        messages.error(request, str(error))
        return redirect("staff:refunds")
    messages.success(request, f"Rejected: {_described(adjustment)}.")
    return redirect("staff:refunds")


@require_permission("ledger.adjust_reasons")
@require_http_methods(["GET", "POST"])
def adjustment_reasons(request: HttpRequest) -> HttpResponse:
    """The clinic's adjustment reasons: add one (POST); deactivate or bring back each."""
    tenant = request.tenant  # type: ignore[attr-defined]
    form = ReasonAddForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                added = adjustment_reason_add(
                    tenant=tenant,
                    actor=request.user,
                    actor_role=request.access.role,  # type: ignore[attr-defined]
                    label=form.cleaned_data["label"],
                    request=request,
                )
            except AdjustmentError as error:
                form.add_error("label", str(error))
            else:
                messages.success(request, f"Added “{added.label}”.")
                return redirect("staff:adjustment-reasons")
        status = 400
    context = {"form": form, "reasons": adjustment_reasons_for(tenant=tenant)}
    return render(request, "billing/staff/adjustment_reasons.html", context, status=status)


@require_permission("ledger.adjust_reasons")
@require_POST
def adjustment_reason_toggle(request: HttpRequest, reason_id: UUID) -> HttpResponse:
    """Deactivate a reason (active=0) or bring it back (active=1); a reason is never deleted."""
    tenant = request.tenant  # type: ignore[attr-defined]
    reason = access_adjustment_reason_by_uuid(tenant=tenant, uuid=reason_id)
    wanted = request.POST.get("active")
    if wanted not in ("0", "1"):
        messages.error(request, "Choose whether the reason is active.")
        return redirect("staff:adjustment-reasons")
    try:
        adjustment_reason_set_active(
            tenant=tenant,
            actor=request.user,
            actor_role=request.access.role,  # type: ignore[attr-defined]
            reason=reason,
            active=wanted == "1",
            request=request,
        )
    except AdjustmentError as error:
        messages.error(request, str(error))
        return redirect("staff:adjustment-reasons")
    done = "brought back" if wanted == "1" else "deactivated; past adjustments keep it"
    messages.success(request, f"“{reason.label}” {done}.")
    return redirect("staff:adjustment-reasons")
