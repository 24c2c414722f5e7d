"""Staff phone payments (virtual terminal) and the staff-side payment receipt.

Routed from portal.urls_staff. The page reuses static/billing/checkout.js with
the patient page's DOM ids; its config points the submit, renew and refresh
calls here. These endpoints check `payments.take_phone` and that the checkout
is a phone checkout of this clinic (access_phone_checkout_by_uuid), never the
patient session binding. Thin: billing.services.phone_payments decides.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from audit.recorder import audit_record
from billing.access import (
    access_payment_by_uuid,
    access_phone_checkout_by_uuid,
    access_staff_payment_by_uuid,
    access_statement_by_uuid,
)
from billing.forms import PaymentSubmitForm
from billing.models import Checkout, PaymentStatus
from billing.processor import ProcessorUnavailable
from billing.services.checkout import (
    CheckoutError,
    SubmitOutcome,
    checkout_audit_unavailable,
    checkout_card_setup,
    checkout_is_open,
)
from billing.services.ledger import statement_balance, statement_payable
from billing.services.payment_states import UNAVAILABLE_MESSAGE
from billing.services.phone_payments import (
    PHONE_CHECKOUT_EXPIRED_MESSAGE,
    phone_checkout_open,
    phone_payment_refresh,
    phone_payment_submit,
)
from billing.services.receipts import receipt_pdf
from billing.views.card_form import card_form_config
from portal.money import Money
from portal.net import client_ip
from security.permissions import require_permission


def _ledger_url(checkout: Checkout) -> str:
    return reverse("staff:patient-ledger", kwargs={"patient_id": checkout.statement.patient.public_id})


@require_permission("payments.take_phone")
@require_POST
def phone_payment_open(request: HttpRequest, statement_id: UUID) -> HttpResponse:
    """Open a phone checkout for a statement (the ledger page's "Take a phone payment")."""
    tenant = request.tenant  # type: ignore[attr-defined]
    statement = access_statement_by_uuid(tenant=tenant, uuid=statement_id)
    try:
        checkout = phone_checkout_open(
            tenant=tenant,
            statement=statement,
            actor=request.user,
            actor_role=request.access.role,  # type: ignore[attr-defined]
            request=request,
        )
    except CheckoutError as error:
        messages.error(request, error.message)
        return redirect("staff:patient-ledger", patient_id=statement.patient.public_id)
    return redirect("staff:phone-payment", phone_checkout_id=checkout.public_id)


@require_permission("payments.take_phone")
@require_GET
def phone_payment_page(request: HttpRequest, phone_checkout_id: UUID) -> HttpResponse:
    """The amount and the card Element, for staff keying a card the patient reads out."""
    tenant = request.tenant  # type: ignore[attr-defined]
    checkout = access_phone_checkout_by_uuid(tenant=tenant, uuid=phone_checkout_id)
    if not checkout_is_open(checkout):
        messages.info(request, PHONE_CHECKOUT_EXPIRED_MESSAGE)
        return redirect(_ledger_url(checkout))
    statement = checkout.statement
    payable = statement_payable(statement=statement)
    balance = statement_balance(statement=statement)
    context: dict[str, Any] = {
        "checkout": checkout,
        "statement": statement,
        "patient": statement.patient,
        "balance": balance,
        "payable": payable,
        "in_flight": balance - payable if balance.minor_units > payable.minor_units else None,
        "ledger_url": _ledger_url(checkout),
    }
    if payable.minor_units <= 0:
        return render(request, "billing/staff/phone_payment.html", {**context, "nothing_due": True})
    try:
        setup = checkout_card_setup(tenant=tenant, checkout=checkout)
    except ProcessorUnavailable:
        checkout_audit_unavailable(tenant=tenant, checkout=checkout)
        return render(
            request, "billing/staff/phone_payment.html", {**context, "unavailable": UNAVAILABLE_MESSAGE}, status=503
        )
    url_kwargs = {"phone_checkout_id": checkout.public_id}
    context.update(
        minimum=Money(min(tenant.minimum_payment_minor, payable.minor_units), tenant.currency),
        checkout_config=card_form_config(
            setup=setup,
            payable=payable,
            submit_url=reverse("staff:phone-payment-submit", kwargs=url_kwargs),
            renew_url=reverse("staff:phone-payment-renew", kwargs=url_kwargs),
        ),
    )
    response = render(request, "billing/staff/phone_payment.html", context)
    response["Cache-Control"] = "no-store"  # carries the SetupIntent's client secret
    return response


def _outcome_json(request: HttpRequest, checkout: Checkout, outcome: SubmitOutcome) -> JsonResponse:
    body: dict[str, Any] = {"state": outcome.state, "message": outcome.message}
    if outcome.payment is not None:
        # Succeeded or pending: the staff payment page, with channel, status and the receipt.
        body["resultUrl"] = reverse("staff:payment", kwargs={"payment_id": outcome.payment.public_id})
        body["refreshUrl"] = reverse(
            "staff:phone-payment-refresh",
            kwargs={"phone_checkout_id": checkout.public_id, "payment_id": outcome.payment.public_id},
        )
    if outcome.state == "failed":
        # A fresh card form for the next card: the old SetupIntent is used up.
        try:
            setup = checkout_card_setup(tenant=request.tenant, checkout=checkout)  # type: ignore[attr-defined]
            body["setupClientSecret"], body["setupIntentId"] = setup.client_secret, setup.setup_intent_id
        except ProcessorUnavailable:
            body["message"] += " " + UNAVAILABLE_MESSAGE
    return JsonResponse(body, status=503 if outcome.state == "unavailable" else 200)


@require_permission("payments.take_phone")
@require_POST
def phone_payment_submit_view(request: HttpRequest, phone_checkout_id: UUID) -> HttpResponse:
    """Charge the tokenized card. JSON in and out (called by checkout.js)."""
    tenant = request.tenant  # type: ignore[attr-defined]
    checkout = access_phone_checkout_by_uuid(tenant=tenant, uuid=phone_checkout_id)
    form = PaymentSubmitForm(request.POST)
    if not form.is_valid():
        return JsonResponse({"state": "invalid", "message": "Enter the amount to take.", "field": "amount"}, status=400)
    try:
        outcome = phone_payment_submit(
            tenant=tenant,
            checkout=checkout,
            amount_text=form.cleaned_data["amount"],
            setup_intent_id=form.cleaned_data["setup_intent_id"],
            ip=client_ip(request),
            session_key=request.session.session_key or "",
        )
    except CheckoutError as exc:
        return JsonResponse({"state": "invalid", "message": exc.message, "field": exc.field}, status=400)
    return _outcome_json(request, checkout, outcome)


@require_permission("payments.take_phone")
@require_POST
def phone_payment_renew(request: HttpRequest, phone_checkout_id: UUID) -> HttpResponse:
    """A fresh SetupIntent after the card form failed in the browser."""
    tenant = request.tenant  # type: ignore[attr-defined]
    checkout = access_phone_checkout_by_uuid(tenant=tenant, uuid=phone_checkout_id)
    if not checkout_is_open(checkout):
        return JsonResponse({"state": "expired", "message": PHONE_CHECKOUT_EXPIRED_MESSAGE}, status=400)
    try:
        setup = checkout_card_setup(tenant=tenant, checkout=checkout, renew=True)
    except ProcessorUnavailable:
        return JsonResponse({"state": "unavailable", "message": UNAVAILABLE_MESSAGE}, status=503)
    return JsonResponse(
        {"state": "ready", "setupClientSecret": setup.client_secret, "setupIntentId": setup.setup_intent_id}
    )


@require_permission("payments.take_phone")
@require_POST
def phone_payment_refresh_view(request: HttpRequest, phone_checkout_id: UUID, payment_id: UUID) -> HttpResponse:
    """Settle a phone payment from the processor's state (an authentication request is refused)."""
    tenant = request.tenant  # type: ignore[attr-defined]
    checkout = access_phone_checkout_by_uuid(tenant=tenant, uuid=phone_checkout_id)
    payment = access_payment_by_uuid(checkout=checkout, uuid=payment_id)
    return _outcome_json(request, checkout, phone_payment_refresh(tenant=tenant, payment=payment))


@require_permission("payments.view")
@require_GET
def payment_receipt_pdf_view(request: HttpRequest, payment_id: UUID) -> HttpResponse:
    """The receipt of a succeeded payment, to print or hand over (the patient's own PDF)."""
    tenant = request.tenant  # type: ignore[attr-defined]
    payment = access_staff_payment_by_uuid(tenant=tenant, uuid=payment_id)
    if payment.status != PaymentStatus.SUCCEEDED:
        messages.info(request, "Only a payment that succeeded has a receipt.")
        return redirect("staff:payment", payment_id=payment.public_id)
    audit_record(
        action="receipt.viewed",
        tenant=tenant,
        actor=request.user,
        actor_role=request.access.role,  # type: ignore[attr-defined]
        target_type="payment",
        target_id=str(payment.public_id),
        request=request,
        details={"format": "pdf", "patients": [str(payment.patient.public_id)]},
    )
    response = HttpResponse(receipt_pdf(payment=payment), content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="receipt-{payment.receipt_number}.pdf"'
    response["Cache-Control"] = "no-store"
    return response
