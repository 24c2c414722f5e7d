"""A clinic's branding files (namespace "branding"), served on its host for every page.

Routed from portal.urls (the site shell), so the patient pages' URLs in
billing need not import the shell.
"""

from __future__ import annotations

from django.urls import path

from portal import branding

app_name = "branding"

urlpatterns = [
    path("branding.css", branding.branding_css, name="css"),
    path("branding/logo", branding.branding_logo, name="logo"),
]
