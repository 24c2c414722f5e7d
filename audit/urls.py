from __future__ import annotations

from django.urls import path

from audit import views

app_name = "audit"

urlpatterns = [
    path("", views.search, name="search"),
    path("events/<uuid:event_id>/", views.event_detail, name="event"),
    path("patients/<uuid:patient_id>/", views.patient_report, name="patient-report"),
    path("users/<uuid:user_id>/", views.user_report, name="user-report"),
    path("verify/", views.verify, name="verify"),
    path("verify/<uuid:verification_id>/", views.verification, name="verification"),
    path("verify/audit-signing.pem", views.signing_key, name="signing-key"),
    path("exports/", views.exports, name="exports"),
    path("exports/<uuid:export_id>/", views.export_detail, name="export"),
    path("exports/<uuid:export_id>/download/", views.export_download, name="export-download"),
    path("downloads/<str:token>/", views.download, name="download"),
]
