"""Platform pages: health check and the platform host's front page."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from billing.views.patient import landing
from security.permissions import ANY_HOST, public_view


@public_view(host=ANY_HOST)
def root(request: HttpRequest) -> HttpResponse:
    """A clinic's landing page on its host; the platform page on the platform host."""
    if getattr(request, "tenant", None) is None:
        return render(request, "portal/platform_home.html")
    return landing(request)


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness and database reachability, on any host, for load balancers."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "ok"
    except Exception:  # noqa: BLE001 - report, never raise, from a health check
        database = "unavailable"
    status = 200 if database == "ok" else 503
    return JsonResponse({"status": "ok" if status == 200 else "degraded", "database": database}, status=status)


# Declared public explicitly: the permission walk in the tests requires it.
healthz.settle_permission = None  # type: ignore[attr-defined]
healthz.settle_public = True  # type: ignore[attr-defined]
