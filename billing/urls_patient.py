from __future__ import annotations

from django.urls import path

from billing.views import patient

app_name = "billing"

urlpatterns = [
    path("", patient.landing, name="landing"),
    path("pay/<uuid:checkout_id>/", patient.pay, name="pay"),
    path("pay/<uuid:checkout_id>/submit", patient.pay_submit, name="pay-submit"),
    path("pay/<uuid:checkout_id>/renew", patient.pay_renew, name="pay-renew"),
    path("pay/<uuid:checkout_id>/payments/<uuid:payment_id>/", patient.payment_result, name="payment"),
    path(
        "pay/<uuid:checkout_id>/payments/<uuid:payment_id>/refresh",
        patient.payment_refresh_view,
        name="payment-refresh",
    ),
    path(
        "pay/<uuid:checkout_id>/payments/<uuid:payment_id>/receipt.pdf",
        patient.payment_receipt_pdf,
        name="receipt-pdf",
    ),
]
