"""The root page: a clinic's landing page or the platform front page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from billing.views.patient import landing
from security.permissions import ANY_HOST, public_view


@public_view(host=ANY_HOST)
def root(request: HttpRequest) -> HttpResponse:
    """A clinic's landing page on its host; the platform page on the platform host."""
    if getattr(request, "tenant", None) is None:
        return render(request, "portal/platform_home.html")
    return landing(request)
