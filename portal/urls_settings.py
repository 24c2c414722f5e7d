"""The clinic settings pages under /staff/settings/ (namespace "clinic_settings")."""

from __future__ import annotations

from django.urls import path

from portal.views import clinic_settings

app_name = "clinic_settings"

urlpatterns = [
    path("", clinic_settings.overview, name="overview"),
    path("profile/", clinic_settings.profile, name="profile"),
    path("branding/", clinic_settings.branding, name="branding"),
    path("processor/", clinic_settings.processor, name="processor"),
    path("processor/webhook/", clinic_settings.webhook_register, name="webhook-register"),
    path("processor/webhook-secret/", clinic_settings.webhook_secret, name="webhook-secret"),
    path("policies/", clinic_settings.policies, name="policies"),
    path("approvals/", clinic_settings.approvals, name="approvals"),
]
