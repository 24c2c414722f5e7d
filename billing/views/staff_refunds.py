"""Staff pages for one payment and its refunds: detail and timeline, refund, approvals, refund receipts.

Routed from portal.urls_staff. Thin: forms validate, billing.services.refunds decides.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from audit.recorder import audit_record
from billing.access import access_refund_by_uuid, access_staff_payment_by_uuid
from billing.dispute_models import Dispute
from billing.forms import RejectForm
from billing.models import Payment
from billing.refund_models import Refund, RefundReason, RefundStatus
from billing.services.disputes import dispute_blocks_refund
from billing.services.refund_receipts import refund_receipt_pdf
from billing.services.refunds import (
    NOTE_MAX_LENGTH,
    RefundError,
    payment_refundable,
    refund_approve,
    refund_reject,
    refund_request,
)
from billing.services.timeline import payment_timeline
from billing.views.staff_adjustments import pending_adjustments
from portal.money import Money, MoneyParseError
from security.permissions import require_permission


class RefundForm(forms.Form):
    amount = forms.CharField(label="Amount to refund", max_length=20)
    reason = forms.ChoiceField(label="Reason", choices=RefundReason.choices)
    note = forms.CharField(
        label="Note (optional)",
        max_length=NOTE_MAX_LENGTH,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="For the approver and the record. No card numbers.",
    )

    def __init__(self, *args: Any, currency: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.currency = currency

    def clean_amount(self) -> Money:
        try:
            return Money.parse(self.cleaned_data["amount"], self.currency)
        except MoneyParseError as error:
            raise forms.ValidationError(str(error)) from None


def _payment_page(
    request: HttpRequest, payment: Payment, *, form: RefundForm | None = None, status: int = 200
) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    access = request.access  # type: ignore[attr-defined]
    audit_record(
        action="payment.viewed",
        tenant=tenant,
        actor=request.user,
        actor_role=access.role,
        target_type="payment",
        target_id=str(payment.public_id),
        request=request,
        details={"patients": [str(payment.patient.public_id)]},
    )
    can_refund = "refunds.request" in access.permissions
    context = {
        "payment": payment,
        "disputes": list(payment.disputes.order_by("-opened_at")),
        "refund_blocked": dispute_blocks_refund(payment),
        "timeline": payment_timeline(tenant=tenant, payment=payment),
        "refunds": list(payment.refunds.select_related("requested_by", "decided_by").order_by("requested_at")),
        "refundable": payment_refundable(payment=payment),
        "can_refund": can_refund,
        "refund_form": form or RefundForm(currency=payment.currency) if can_refund else None,
    }
    return render(request, "billing/staff/payment_detail.html", context, status=status)


@require_permission("payments.view")
@require_GET
def payment_detail(request: HttpRequest, payment_id: UUID) -> HttpResponse:
    """One payment: card facts, checks, processor ids, timeline, refunds (an audited PHI read)."""
    payment = access_staff_payment_by_uuid(tenant=request.tenant, uuid=payment_id)  # type: ignore[attr-defined]
    return _payment_page(request, payment)


@require_permission("refunds.request")
@require_POST
def refund_create(request: HttpRequest, payment_id: UUID) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    payment = access_staff_payment_by_uuid(tenant=tenant, uuid=payment_id)
    form = RefundForm(request.POST, currency=payment.currency)
    if not form.is_valid():
        return _payment_page(request, payment, form=form, status=400)
    try:
        outcome = refund_request(
            tenant=tenant,
            actor=request.user,
            actor_role=request.access.role,  # type: ignore[attr-defined]
            payment=payment,
            amount=form.cleaned_data["amount"],
            reason=form.cleaned_data["reason"],
            note=form.cleaned_data["note"],
            request=request,
        )
    except RefundError as error:
        form.add_error(None, str(error))
        return _payment_page(request, payment, form=form, status=400)
    refund = outcome.refund
    refund.refresh_from_db()
    if not outcome.sent:
        messages.info(request, f"Refund of {refund.amount} requested. It waits for a billing manager's approval.")
    elif refund.status == RefundStatus.SUCCEEDED:
        messages.success(request, f"Refunded {refund.amount}. The processor confirmed it.")
    elif refund.status == RefundStatus.FAILED:
        messages.error(request, f"The refund failed: {refund.failure_message}")
    else:
        messages.info(request, f"Refund of {refund.amount} sent; the ledger shows it once the processor confirms.")
    return redirect("staff:payment", payment_id=payment.public_id)


@require_permission("refunds.approve")
@require_GET
def refund_queue(request: HttpRequest) -> HttpResponse:
    """The approvals page: refunds (and adjustments) waiting for a second person, and the latest decisions."""
    tenant = request.tenant  # type: ignore[attr-defined]
    related = ("payment", "payment__patient", "payment__statement", "requested_by", "decided_by")
    pending = list(
        Refund.objects.filter(tenant=tenant, status=RefundStatus.PENDING_APPROVAL)
        .select_related(*related)
        .order_by("requested_at")
    )
    recent = list(
        Refund.objects.filter(tenant=tenant)
        .exclude(status=RefundStatus.PENDING_APPROVAL)
        .select_related(*related)
        .order_by("-requested_at")[:20]
    )
    shown = sorted({str(r.payment.patient.public_id) for r in pending + recent})
    audit_record(
        action="refund.queue_viewed",
        tenant=tenant,
        actor=request.user,
        actor_role=request.access.role,  # type: ignore[attr-defined]
        target_type="refund_list",
        request=request,
        details={"patients": shown},
    )
    context: dict[str, object] = {"pending": pending, "recent": recent, "reject_form": RejectForm()}
    # One place for approvers: adjustments waiting for a second person are listed here too.
    if "ledger.adjust_approve" in request.access.permissions:  # type: ignore[attr-defined]
        context.update(pending_adjustments(request), show_adjustments=True)
    return render(request, "billing/staff/refunds.html", context)


@require_permission("refunds.approve")
@require_POST
def refund_approve_view(request: HttpRequest, refund_id: UUID) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    refund = access_refund_by_uuid(tenant=tenant, uuid=refund_id)
    try:
        refund_approve(
            tenant=tenant,
            actor=request.user,
            actor_role=request.access.role,  # type: ignore[attr-defined]
            refund=refund,
            request=request,
        )
    except RefundError as error:
        messages.error(request, str(error))
        return redirect("staff:refunds")
    refund.refresh_from_db()
    if refund.status == RefundStatus.SUCCEEDED:
        messages.success(request, f"Approved: {refund.amount} refunded. The processor confirmed it.")
    elif refund.status == RefundStatus.FAILED:
        messages.error(request, f"Approved, but the refund failed: {refund.failure_message}")
    else:
        messages.info(request, f"Approved: {refund.amount} sent to the processor.")
    return redirect("staff:refunds")


@require_permission("refunds.approve")
@require_POST
def refund_reject_view(request: HttpRequest, refund_id: UUID) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    refund = access_refund_by_uuid(tenant=tenant, uuid=refund_id)
    form = RejectForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say why the refund is rejected; the requester sees it.")
        return redirect("staff:refunds")
    try:
        refund_reject(
            tenant=tenant,
            actor=request.user,
            actor_role=request.access.role,  # type: ignore[attr-defined]
            refund=refund,
            reason=form.cleaned_data["reason"],
            request=request,
        )
    except RefundError as error:
        messages.error(request, str(error))
        return redirect("staff:refunds")
    messages.success(request, f"Rejected the refund of {refund.amount}.")
    return redirect("staff:refunds")


def _succeeded_refund(request: HttpRequest, refund_id: UUID) -> Refund:
    refund = access_refund_by_uuid(tenant=request.tenant, uuid=refund_id)  # type: ignore[attr-defined]
    if refund.status != RefundStatus.SUCCEEDED:
        raise Http404
    audit_record(
        action="receipt.viewed",
        tenant=request.tenant,  # type: ignore[attr-defined]
        actor=request.user,
        actor_role=request.access.role,  # type: ignore[attr-defined]
        target_type="refund",
        target_id=str(refund.public_id),
        request=request,
        details={"patients": [str(refund.payment.patient.public_id)]},
    )
    return refund


@require_permission("payments.view")
@require_GET
def refund_receipt(request: HttpRequest, refund_id: UUID) -> HttpResponse:
    refund = _succeeded_refund(request, refund_id)
    return render(request, "billing/staff/refund_receipt.html", {"refund": refund, "payment": refund.payment})


@require_permission("payments.view")
@require_GET
def refund_receipt_pdf_view(request: HttpRequest, refund_id: UUID) -> HttpResponse:
    refund = _succeeded_refund(request, refund_id)
    response = HttpResponse(refund_receipt_pdf(refund=refund), content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="refund-{refund.receipt_number}.pdf"'
    return response


@require_permission("disputes.manage")
@require_GET
def dispute_list(request: HttpRequest) -> HttpResponse:
    """The clinic's disputes, open ones first by evidence due date (an audited read naming patients)."""
    tenant = request.tenant  # type: ignore[attr-defined]
    disputes = list(
        Dispute.objects.filter(tenant=tenant)
        .select_related("payment", "payment__patient", "payment__statement")
        .order_by("closed_at", "evidence_due_by", "-opened_at")[:200]
    )
    audit_record(
        action="dispute.list_viewed",
        tenant=tenant,
        actor=request.user,
        actor_role=request.access.role,  # type: ignore[attr-defined]
        target_type="dispute_list",
        request=request,
        details={"patients": sorted({str(d.payment.patient.public_id) for d in disputes})},
    )
    return render(request, "billing/staff/disputes.html", {"disputes": disputes})
