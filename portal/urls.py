from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from portal import views

urlpatterns = [
    path("", views.root, name="root"),
    path("admin/", admin.site.urls),
    path("webhooks/", include("billing.urls_webhooks")),
    path("staff/audit/", include("audit.urls")),
    path("staff/", include("billing.urls_staff")),
    path("", include("billing.urls_patient")),
]

handler404 = "portal.errors.not_found"
handler500 = "portal.errors.server_error"
