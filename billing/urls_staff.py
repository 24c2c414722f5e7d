from __future__ import annotations

from django.urls import path

from billing.views import staff

app_name = "staff"

urlpatterns = [
    path("login/", staff.login, name="login"),
    path("logout/", staff.logout, name="logout"),
    path("", staff.payments, name="payments"),
    path("patients/<uuid:patient_id>/", staff.patient_ledger, name="patient-ledger"),
]
