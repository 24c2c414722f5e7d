"""Platform pages: health check and the platform host's front page."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from security.permissions import PLATFORM_HOST, public_view


@public_view(host=PLATFORM_HOST)
def platform_home(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/platform_home.html")


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
