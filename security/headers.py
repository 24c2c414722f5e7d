"""Security headers on every response, and the CSP violation report endpoint.

Django's SecurityMiddleware sets HSTS (production), nosniff, Referrer-Policy
and Cross-Origin-Opener-Policy; django-csp sets the content security policy
(with frame-ancestors 'none'). This middleware sits outermost so that it also
covers responses produced before those run (the health check, unknown hosts):
it adds Permissions-Policy and Reporting-Endpoints, fills in any of the
others that are missing, and makes every response `Cache-Control: no-store`
except declared cacheable assets (security.caching).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from portal.net import client_ip
from security import ratelimit
from security.caching import apply_no_store
from security.models import CspViolation
from security.permissions import ANY_HOST, public_view
from security.textinput import clean_text

logger = logging.getLogger(__name__)

CSP_REPORT_PATH = "/csp-report/"
CSP_REPORT_GROUP = "csp-endpoint"
CSP_REPORT_MAX_BYTES = 16 * 1024
CSP_REPORT_CONTENT_TYPES = ("application/csp-report", "application/reports+json", "application/json")
# Per client IP and minute; browsers send one report per violation, a page
# with a real problem sends a handful.
CSP_REPORT_RATE_LIMIT = 30
CSP_REPORT_RATE_WINDOW_SECONDS = 60

# Every powerful feature off, except payment for ourselves and the processor's
# frame (Stripe.js uses the Payment Request API from its own origin).
_DISABLED_FEATURES = (
    "accelerometer",
    "autoplay",
    "camera",
    "display-capture",
    "geolocation",
    "gyroscope",
    "magnetometer",
    "microphone",
    "midi",
    "usb",
    "xr-spatial-tracking",
)

# Used only when django-csp did not run (responses from earlier middleware).
_FALLBACK_CSP = "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def permissions_policy() -> str:
    processor = _origin(settings.STRIPE_JS_URL)
    payment = "self" + (f' "{processor}"' if processor else "")
    return ", ".join([*(f"{feature}=()" for feature in _DISABLED_FEATURES), f"payment=({payment})"])


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        response.setdefault("Permissions-Policy", permissions_policy())
        response.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        response.setdefault("X-Content-Type-Options", "nosniff")
        response.setdefault("Referrer-Policy", settings.SECURE_REFERRER_POLICY or "same-origin")
        response.setdefault("X-Frame-Options", "DENY")
        response.setdefault("Content-Security-Policy", _FALLBACK_CSP)
        response.setdefault("Reporting-Endpoints", f'{CSP_REPORT_GROUP}="{CSP_REPORT_PATH}"')
        apply_no_store(request, response)
        return response


def _short(value: Any, limit: int) -> str:
    # A report is any client's JSON: a NUL or a lone surrogate ("\ud800") in it
    # would make PostgreSQL refuse the row (a 500), so they are stripped.
    return clean_text(value[:limit]) if isinstance(value, str) else ""


def _blocked(value: str) -> str:
    """The blocked resource as an origin or a keyword, never a full URL."""
    if not value:
        return ""
    origin = _origin(value)
    if origin:
        return origin[:255]
    # Keywords browsers send: inline, eval, self, data, blob, wasm-eval...
    keyword = value.split(":", 1)[0]
    return keyword[:32] if keyword.replace("-", "").isalnum() else "other"


def _document_path(value: str) -> str:
    return urlsplit(value).path[:255] if value else ""


def _violations(body: Any) -> list[dict[str, str]]:
    """Normalise both report formats into {directive, blocked, document}."""
    found: list[dict[str, str]] = []
    if isinstance(body, dict) and isinstance(body.get("csp-report"), dict):
        # report-uri format (application/csp-report).
        report = body["csp-report"]
        found.append(
            {
                "directive": _short(report.get("effective-directive") or report.get("violated-directive"), 64),
                "blocked": _short(report.get("blocked-uri"), 2048),
                "document": _short(report.get("document-uri"), 2048),
            }
        )
    elif isinstance(body, list):
        # Reporting API format (application/reports+json): a list of reports.
        for entry in body[:20]:
            if not isinstance(entry, dict) or entry.get("type") != "csp-violation":
                continue
            report = entry.get("body")
            if not isinstance(report, dict):
                continue
            found.append(
                {
                    "directive": _short(report.get("effectiveDirective"), 64),
                    "blocked": _short(report.get("blockedURL"), 2048),
                    "document": _short(report.get("documentURL") or entry.get("url"), 2048),
                }
            )
    return [v for v in found if v["directive"]]


# CSRF-exempt because browsers send violation reports themselves, without a
# CSRF token or cookie we could check. The endpoint only appends small
# normalised rows (no full URLs), is size-capped and rate limited per IP, and
# changes nothing else.
@csrf_exempt
@public_view(host=ANY_HOST)
@require_POST
def csp_report(request: HttpRequest) -> HttpResponse:
    """Record CSP violations sent by browsers; always 204 (never 500 on garbage)."""
    if not ratelimit.hit(
        "csp-report", client_ip(request), limit=CSP_REPORT_RATE_LIMIT, window_seconds=CSP_REPORT_RATE_WINDOW_SECONDS
    ):
        return HttpResponse(status=429)
    content_type = request.content_type or ""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = CSP_REPORT_MAX_BYTES + 1
    if content_type not in CSP_REPORT_CONTENT_TYPES:
        return HttpResponse(status=415)
    if length > CSP_REPORT_MAX_BYTES:
        return HttpResponse(status=413)
    try:
        body = json.loads(request.read(CSP_REPORT_MAX_BYTES + 1)[:CSP_REPORT_MAX_BYTES])
        violations = [
            {"directive": v["directive"], "blocked": _blocked(v["blocked"]), "document": _document_path(v["document"])}
            for v in _violations(body)
        ]
    except (ValueError, OSError, RecursionError):
        return HttpResponse(status=400)
    tenant = getattr(request, "tenant", None)
    for violation in violations:
        CspViolation.objects.create(
            tenant=tenant,
            directive=violation["directive"],
            blocked=violation["blocked"],
            document_path=violation["document"],
        )
    return HttpResponse(status=204)
