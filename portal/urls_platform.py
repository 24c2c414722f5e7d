"""The platform console under /platform/ on the platform host (namespace "platform")."""

from __future__ import annotations

from django.urls import path

from portal.views import platform

app_name = "platform"

urlpatterns = [
    path("", platform.clinics, name="clinics"),
    path("clinics/new/", platform.clinic_new, name="clinic-new"),
    path("clinics/<uuid:tenant_id>/", platform.clinic, name="clinic"),
    path("clinics/<uuid:tenant_id>/edit/", platform.clinic_edit, name="clinic-edit"),
    path("clinics/<uuid:tenant_id>/suspend/", platform.clinic_suspend_view, name="clinic-suspend"),
    path("clinics/<uuid:tenant_id>/reactivate/", platform.clinic_reactivate_view, name="clinic-reactivate"),
    path("clinics/<uuid:tenant_id>/domain/verify/", platform.clinic_domain_verify_view, name="clinic-domain-verify"),
    path("clinics/<uuid:tenant_id>/invite/", platform.clinic_invite_view, name="clinic-invite"),
]
