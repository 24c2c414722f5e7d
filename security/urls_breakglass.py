"""Break-glass pages under /staff/break-glass/ (namespace "breakglass")."""

from __future__ import annotations

from django.urls import path

from security import breakglass_views

app_name = "breakglass"

urlpatterns = [
    path("", breakglass_views.start, name="start"),
    path("<uuid:grant_id>/end/", breakglass_views.end, name="end"),
]
