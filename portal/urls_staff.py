"""The staff console's own pages under /staff/ (namespace "staff").

Sections with many pages have their own namespaces (audit, keys, sessions,
team, breakglass), included from portal.urls.
"""

from __future__ import annotations

from django.urls import path

from billing.views import staff as billing_staff
from portal import dashboard
from security import auth_views

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
    path("payments/", billing_staff.payments, name="payments"),
    path("payments/<uuid:payment_id>/cancel/", billing_staff.payment_cancel, name="payment-cancel"),
    path("patients/", billing_staff.patients, name="patients"),
    path("patients/<uuid:patient_id>/", billing_staff.patient_ledger, name="patient-ledger"),
]
