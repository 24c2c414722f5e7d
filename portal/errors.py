from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "portal/not_found.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/server_error.html", status=500)
