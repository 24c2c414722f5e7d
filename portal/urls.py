from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from portal import views
from security.headers import csp_report

urlpatterns = [
    path("", views.root, name="root"),
    path("admin/", admin.site.urls),
    path("webhooks/", include("billing.urls_webhooks")),
    path("csp-report/", csp_report, name="csp-report"),
    path("staff/audit/", include("audit.urls")),
    path("staff/sessions/", include("security.urls_sessions")),
    path("staff/keys/", include("security.urls")),
    path("staff/team/", include("security.urls_team")),
    path("staff/break-glass/", include("security.urls_breakglass")),
    path("staff/settings/", include("portal.urls_settings")),
    path("staff/", include("portal.urls_staff")),
    path("platform/", include("portal.urls_platform")),
    path("", include("portal.urls_branding")),
    path("", include("billing.urls_patient")),
]

handler403 = "portal.views.errors.forbidden"
handler404 = "portal.errors.not_found"
handler500 = "portal.errors.server_error"
