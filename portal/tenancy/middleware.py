"""Resolve the tenant from the host and run the request inside its scope."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from portal.tenancy.context import tenant_scope
from portal.tenancy.resolution import resolve_host


class TenantMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        host = request.get_host().rsplit(":", 1)[0] if not request.get_host().startswith("[") else request.get_host()
        match = resolve_host(host)
        if match is None:
            # A friendly page, and the same one for a disabled clinic and a
            # host that never existed.
            return render(request, "portal/unknown_host.html", status=404)
        if match.tenant is not None and match.tenant.suspended_at is not None:
            # Suspended by the platform: every page of the clinic's hosts,
            # staff sign-in and signed-in staff sessions included, gets this
            # page. Nothing is deleted; reactivating restores the clinic.
            return render(request, "portal/suspended.html", {"clinic": match.tenant}, status=503)
        request.tenant = match.tenant  # type: ignore[attr-defined]
        request.is_platform_host = match.is_platform  # type: ignore[attr-defined]
        if match.tenant is None:
            return self.get_response(request)
        # Dates and times on a clinic's pages are in the clinic's time zone.
        with tenant_scope(match.tenant), timezone.override(ZoneInfo(match.tenant.timezone)):
            return self.get_response(request)
