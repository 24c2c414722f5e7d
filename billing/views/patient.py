"""Patient pages: look up, pay, receipt. Public (guest) views on a tenant host."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from audit.recorder import audit_record
from billing.access import access_checkout_by_uuid, access_payment_by_uuid, remember_checkout
from billing.forms import PaymentSubmitForm, StatementLookupForm
from billing.models import Checkout, Payment, PaymentStatus
from billing.processor import ProcessorUnavailable
from billing.services.checkout import (
    CheckoutError,
    SubmitOutcome,
    checkout_audit_unavailable,
    checkout_card_setup,
    checkout_is_open,
    checkout_open,
    outcome_for,
    payment_refresh,
    payment_submit,
)
from billing.services.ledger import statement_awaiting_patient, statement_balance, statement_payable
from billing.services.lookup import LookupFailed, LookupLocked, LookupRateLimited, statement_lookup
from billing.services.payment_states import UNAVAILABLE_MESSAGE
from billing.services.receipts import receipt_pdf
from billing.views.card_form import card_form_config
from portal.models import Tenant
from portal.money import Money
from portal.net import client_ip
from security.permissions import TENANT_HOST, public_view

LOOKUP_FAILED_MESSAGE = (
    "We could not find a statement with those details. Check the statement number and the patient's "
    "date of birth exactly as they appear on your statement."
)


def lookup_locked_message(minutes: int) -> str:
    """What a guest is told when look-ups are locked: how long, as the clinic set it."""
    span = f"{minutes // 60} hour{'s' if minutes // 60 != 1 else ''}" if minutes % 60 == 0 else f"{minutes} minutes"
    return (
        f"For your security, statement look-ups are paused for {span} after too many unsuccessful tries. "
        "You can also call the clinic to pay."
    )


LOOKUP_LOCKED_MESSAGE = lookup_locked_message(30)
LOOKUP_RATE_MESSAGE = "Too many look-ups in a short time. Please wait a minute and try again."


def _tenant(request: HttpRequest) -> Tenant:
    return request.tenant  # type: ignore[attr-defined, no-any-return]


@public_view(host=TENANT_HOST)
@require_http_methods(["GET", "POST"])
def landing(request: HttpRequest) -> HttpResponse:
    """The clinic's page: look a statement up by number and date of birth."""
    tenant = _tenant(request)
    form = StatementLookupForm(request.POST or None, statement_number_hint=tenant.statement_number_hint)
    error = ""
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            statement = statement_lookup(
                tenant=tenant,
                number=form.cleaned_data["statement_number"],
                date_of_birth=form.cleaned_data["date_of_birth"],
                ip=client_ip(request),
                request=request,
            )
        except LookupLocked as locked:
            error, status = lookup_locked_message(locked.minutes), 429
        except LookupRateLimited:
            error, status = LOOKUP_RATE_MESSAGE, 429
        except LookupFailed:
            error, status = LOOKUP_FAILED_MESSAGE, 200
        else:
            # A new session id once the guest proves who they are (no fixation).
            request.session.cycle_key()
            checkout = checkout_open(tenant=tenant, statement=statement, request=request)
            remember_checkout(request, checkout)
            return redirect("billing:pay", checkout_id=checkout.public_id)
    elif request.method == "POST":
        status = 400
    return render(request, "billing/landing.html", {"form": form, "lookup_error": error}, status=status)


def _checkout_context(checkout: Checkout) -> dict[str, Any]:
    statement = checkout.statement
    balance = statement_balance(statement=statement)
    payable = statement_payable(statement=statement)
    return {
        "checkout": checkout,
        "statement": statement,
        "patient_first_name": statement.patient.first_name,
        "balance": balance,
        "payable": payable,
        "in_flight": balance - payable if balance.minor_units > payable.minor_units else None,
        # An earlier attempt left at 3-D Secure: paying now cancels it first.
        "awaiting": statement_awaiting_patient(statement=statement),
        "succeeded_payments": Payment.objects.filter(checkout=checkout, status=PaymentStatus.SUCCEEDED).order_by(
            "-succeeded_at"
        ),
    }


@public_view(host=TENANT_HOST)
@require_GET
def pay(request: HttpRequest, checkout_id: UUID) -> HttpResponse:
    """Step 2: the amount and the card."""
    tenant = _tenant(request)
    checkout = access_checkout_by_uuid(request=request, tenant=tenant, uuid=checkout_id)
    if not checkout_is_open(checkout):
        messages.info(request, "That payment page expired. Please look your statement up again.")
        return redirect("billing:landing")
    context = _checkout_context(checkout)
    if context["payable"].minor_units <= 0:
        return render(request, "billing/nothing_due.html", context)
    try:
        setup = checkout_card_setup(tenant=tenant, checkout=checkout)
    except ProcessorUnavailable:
        checkout_audit_unavailable(tenant=tenant, checkout=checkout)
        return render(request, "billing/unavailable.html", {**context, "message": UNAVAILABLE_MESSAGE}, status=503)
    minimum = Money(min(tenant.minimum_payment_minor, context["payable"].minor_units), tenant.currency)
    context.update(
        {
            "minimum": minimum,
            "checkout_config": card_form_config(
                setup=setup,
                payable=context["payable"],
                submit_url=reverse("billing:pay-submit", kwargs={"checkout_id": checkout.public_id}),
                renew_url=reverse("billing:pay-renew", kwargs={"checkout_id": checkout.public_id}),
            ),
        }
    )
    return render(request, "billing/pay.html", context)


def _checkout_and_payment(request: HttpRequest, checkout_id: UUID, payment_id: UUID) -> tuple[Checkout, Payment]:
    checkout = access_checkout_by_uuid(request=request, tenant=_tenant(request), uuid=checkout_id)
    return checkout, access_payment_by_uuid(checkout=checkout, uuid=payment_id)


def _audit_receipt_viewed(request: HttpRequest, payment: Payment, **details: str) -> None:
    audit_record(
        action="receipt.viewed",
        tenant=_tenant(request),
        actor_role="guest",
        target_type="payment",
        target_id=str(payment.public_id),
        request=request,
        details=details,
    )


def _result_url(checkout: Checkout, payment: Payment) -> str:
    return reverse("billing:payment", kwargs={"checkout_id": checkout.public_id, "payment_id": payment.public_id})


def _outcome_json(request: HttpRequest, checkout: Checkout, outcome: SubmitOutcome) -> JsonResponse:
    body: dict[str, Any] = {"state": outcome.state, "message": outcome.message}
    if outcome.payment is not None:
        body["resultUrl"] = _result_url(checkout, outcome.payment)
        body["refreshUrl"] = reverse(
            "billing:payment-refresh",
            kwargs={"checkout_id": checkout.public_id, "payment_id": outcome.payment.public_id},
        )
    if outcome.state == "requires_action":
        body["clientSecret"] = outcome.client_secret
    if outcome.state == "failed":
        # A fresh card form for the retry: the old SetupIntent is used up.
        try:
            setup = checkout_card_setup(tenant=_tenant(request), checkout=checkout)
            body["setupClientSecret"], body["setupIntentId"] = setup.client_secret, setup.setup_intent_id
        except ProcessorUnavailable:
            body["message"] += " " + UNAVAILABLE_MESSAGE
    status = 503 if outcome.state == "unavailable" else 200
    return JsonResponse(body, status=status)


@public_view(host=TENANT_HOST)
@require_POST
def pay_submit(request: HttpRequest, checkout_id: UUID) -> HttpResponse:
    """Charge the tokenized card. JSON in and out (called by checkout.js)."""
    tenant = _tenant(request)
    checkout = access_checkout_by_uuid(request=request, tenant=tenant, uuid=checkout_id)
    form = PaymentSubmitForm(request.POST)
    if not form.is_valid():
        return JsonResponse({"state": "invalid", "message": "Enter the amount to pay.", "field": "amount"}, status=400)
    try:
        outcome = payment_submit(
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


@public_view(host=TENANT_HOST)
@require_POST
def pay_renew(request: HttpRequest, checkout_id: UUID) -> HttpResponse:
    """A fresh SetupIntent after the card form failed in the browser."""
    tenant = _tenant(request)
    checkout = access_checkout_by_uuid(request=request, tenant=tenant, uuid=checkout_id)
    if not checkout_is_open(checkout):
        return JsonResponse({"state": "expired", "message": "This payment page has expired."}, status=400)
    try:
        # The current SetupIntent may have been declined in the browser.
        setup = checkout_card_setup(tenant=tenant, checkout=checkout, renew=True)
    except ProcessorUnavailable:
        return JsonResponse({"state": "unavailable", "message": UNAVAILABLE_MESSAGE}, status=503)
    return JsonResponse(
        {"state": "ready", "setupClientSecret": setup.client_secret, "setupIntentId": setup.setup_intent_id}
    )


@public_view(host=TENANT_HOST)
@require_POST
def payment_refresh_view(request: HttpRequest, checkout_id: UUID, payment_id: UUID) -> HttpResponse:
    """After 3-D Secure in the browser: settle from the processor's state."""
    checkout, payment = _checkout_and_payment(request, checkout_id, payment_id)
    return _outcome_json(request, checkout, payment_refresh(tenant=_tenant(request), payment=payment))


@public_view(host=TENANT_HOST)
@require_GET
def payment_result(request: HttpRequest, checkout_id: UUID, payment_id: UUID) -> HttpResponse:
    """Step 3: the receipt (or where the payment stands)."""
    checkout, payment = _checkout_and_payment(request, checkout_id, payment_id)
    outcome = outcome_for(payment)
    if outcome.state == "succeeded":
        _audit_receipt_viewed(request, payment)
    context = {
        **_checkout_context(checkout),
        "payment": payment,
        "outcome": outcome,
    }
    return render(request, "billing/result.html", context)


@public_view(host=TENANT_HOST)
@require_GET
def payment_receipt_pdf(request: HttpRequest, checkout_id: UUID, payment_id: UUID) -> HttpResponse:
    checkout, payment = _checkout_and_payment(request, checkout_id, payment_id)
    if payment.status != PaymentStatus.SUCCEEDED:
        return redirect(_result_url(checkout, payment))
    _audit_receipt_viewed(request, payment, format="pdf")
    response = HttpResponse(receipt_pdf(payment=payment), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="receipt-{payment.receipt_number}.pdf"'
    response["Cache-Control"] = "no-store"
    return response
