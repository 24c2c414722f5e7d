"""Request ids, and the health check that answers before host validation."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from portal.logging import request_id_var

# Accept an upstream id (load balancer) only when it looks like one, so a
# client cannot inject text into our logs.
_UPSTREAM_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        upstream = request.headers.get("X-Request-Id", "")
        request_id = upstream if _UPSTREAM_ID.match(upstream) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-Id"] = request_id
        return response


HEALTH_PATH = "/healthz"


def health_response() -> JsonResponse:
    """Liveness and database reachability; never raises."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "ok"
    except Exception:  # noqa: BLE001 - report, never raise, from a health check
        database = "unavailable"
    healthy = database == "ok"
    return JsonResponse(
        {"status": "ok" if healthy else "degraded", "database": database}, status=200 if healthy else 503
    )


class HealthCheckMiddleware:
    """Answer /healthz before host validation and the HTTPS redirect.

    Load balancers probe targets by IP address and over plain HTTP; the
    answer names no tenant and reveals nothing but up or down.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == HEALTH_PATH and request.method in ("GET", "HEAD"):
            return health_response()
        return self.get_response(request)
