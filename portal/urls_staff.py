"""The staff console's own pages under /staff/ (namespace "staff").

Sections with many pages have their own namespaces (audit, keys, sessions,
team, breakglass), included from portal.urls.
"""

from __future__ import annotations

from django.urls import path

from billing.views import staff as billing_staff
from billing.views import staff_adjustments, staff_imports, staff_phone, staff_refunds
from portal import dashboard
from security import auth_views, recovery_views

app_name = "staff"

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("login/", auth_views.login, name="login"),
    path("logout/", auth_views.logout, name="logout"),
    path("mfa/", auth_views.mfa, name="mfa"),
    path("mfa/enrol/", auth_views.mfa_enrol, name="mfa-enrol"),
    path("account/", auth_views.account, name="account"),
    path("account/password/", auth_views.password_change, name="password-change"),
    path("account/recovery-codes/", auth_views.recovery_codes_new, name="recovery-codes"),
    path("password/forgot/", recovery_views.password_forgot, name="password-forgot"),
    # <token> is the link's token, or recovery_views.RESET_PLACEHOLDER once opened.
    path("password/reset/<str:token>/", recovery_views.password_reset, name="password-reset"),
    path("payments/", billing_staff.payments, name="payments"),
    path("payments/export.csv", billing_staff.payments_export, name="payments-export"),
    path("payments/<uuid:payment_id>/", staff_refunds.payment_detail, name="payment"),
    path("payments/<uuid:payment_id>/refund/", staff_refunds.refund_create, name="payment-refund"),
    path("refunds/", staff_refunds.refund_queue, name="refunds"),
    path("disputes/", staff_refunds.dispute_list, name="disputes"),
    path("refunds/<uuid:refund_id>/approve/", staff_refunds.refund_approve_view, name="refund-approve"),
    path("refunds/<uuid:refund_id>/reject/", staff_refunds.refund_reject_view, name="refund-reject"),
    path("refunds/<uuid:refund_id>/receipt/", staff_refunds.refund_receipt, name="refund-receipt"),
    path("refunds/<uuid:refund_id>/receipt.pdf", staff_refunds.refund_receipt_pdf_view, name="refund-receipt-pdf"),
    path("payments/<uuid:payment_id>/cancel/", billing_staff.payment_cancel, name="payment-cancel"),
    path("patients/", billing_staff.patients, name="patients"),
    path("patients/<uuid:patient_id>/", billing_staff.patient_ledger, name="patient-ledger"),
    path("statements/<uuid:statement_id>/adjust/", staff_adjustments.adjustment_create, name="statement-adjust"),
    path(
        "adjustments/<uuid:adjustment_id>/approve/",
        staff_adjustments.adjustment_approve_view,
        name="adjustment-approve",
    ),
    path(
        "adjustments/<uuid:adjustment_id>/reject/", staff_adjustments.adjustment_reject_view, name="adjustment-reject"
    ),
    path("adjustments/reasons/", staff_adjustments.adjustment_reasons, name="adjustment-reasons"),
    path(
        "adjustments/reasons/<uuid:reason_id>/active/",
        staff_adjustments.adjustment_reason_toggle,
        name="adjustment-reason-active",
    ),
    path("imports/", staff_imports.statement_imports, name="statement-imports"),
    path("imports/<uuid:job_id>/", staff_imports.statement_import, name="statement-import"),
    path("imports/<uuid:job_id>/rejected.csv", staff_imports.statement_import_report, name="statement-import-report"),
    # Phone payments (virtual terminal) and the staff-side receipt.
    path("statements/<uuid:statement_id>/phone-payment/", staff_phone.phone_payment_open, name="phone-payment-open"),
    path("phone-payments/<uuid:phone_checkout_id>/", staff_phone.phone_payment_page, name="phone-payment"),
    path(
        "phone-payments/<uuid:phone_checkout_id>/submit",
        staff_phone.phone_payment_submit_view,
        name="phone-payment-submit",
    ),
    path("phone-payments/<uuid:phone_checkout_id>/renew", staff_phone.phone_payment_renew, name="phone-payment-renew"),
    path(
        "phone-payments/<uuid:phone_checkout_id>/payments/<uuid:payment_id>/refresh",
        staff_phone.phone_payment_refresh_view,
        name="phone-payment-refresh",
    ),
    path("payments/<uuid:payment_id>/receipt.pdf", staff_phone.payment_receipt_pdf_view, name="payment-receipt-pdf"),
]
