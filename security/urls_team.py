from __future__ import annotations

from django.urls import URLPattern

app_name = "team"

urlpatterns: list[URLPattern] = []
