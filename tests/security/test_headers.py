"""Security headers on every page, and the CSP violation report endpoint."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from security.headers import CSP_REPORT_MAX_BYTES, CSP_REPORT_RATE_LIMIT
from security.models import CspViolation
from tests.conftest import platform_client
from tests.settings_probe import load_settings, production_environment

pytestmark = pytest.mark.django_db

# Routes the Django admin serves are walked too (its headers come from the
# same middleware); only static files are left out.
_CONVERTER = re.compile(r"<(?:(?P<kind>\w+):)?(?P<name>\w+)>")


def _walk(patterns: list, prefix: str = ""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern)


def _concrete(route: str) -> str | None:
    """A path for `route` with UUIDs (and simple values) for its converters; None for regex routes."""
    if route.startswith("^") or "(?" in route or "\\" in route:
        return None

    def value(match: re.Match[str]) -> str:
        kind = match.group("kind") or "str"
        return {"uuid": str(uuid.uuid4()), "int": "1", "path": "x/y"}.get(kind, "x")

    return "/" + _CONVERTER.sub(value, route).lstrip("^").rstrip("$")


def concrete_paths() -> list[str]:
    paths = {p for route in _walk(get_resolver().url_patterns) if (p := _concrete(route)) is not None}
    paths |= {"/no-such-page/", "/staff/no-such-page/"}  # 404s
    return sorted(paths)


def assert_security_headers(response, where: str) -> None:
    csp = response.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp, where
    assert response.get("X-Content-Type-Options") == "nosniff", where
    assert response.get("Referrer-Policy") == "same-origin", where
    assert response.get("Cross-Origin-Opener-Policy") == "same-origin", where
    permissions = response.get("Permissions-Policy", "")
    for feature in ("camera=()", "microphone=()", "geolocation=()", "payment=(self"):
        assert feature in permissions, where
    assert response.get("X-Frame-Options") == "DENY", where


def test_walk_covers_the_url_configuration():
    paths = concrete_paths()
    assert "/" in paths
    assert "/csp-report/" in paths
    assert "/staff/sessions/" in paths
    assert any(p.startswith("/staff/audit/") for p in paths)
    assert any(p.startswith("/admin/") for p in paths)


def test_every_route_has_the_security_headers_on_tenant_and_platform_hosts(clinic_a):
    seen_statuses: set[int] = set()
    for client_name, client in (("tenant", clinic_a.client()), ("platform", platform_client())):
        for path in concrete_paths():
            response = client.get(path)
            seen_statuses.add(response.status_code)
            assert_security_headers(response, f"{client_name} GET {path} -> {response.status_code}")
    # The walk met pages, redirects and not-found answers.
    assert {200, 302, 404} <= seen_statuses


def test_signed_in_staff_pages_have_the_headers(clinic_a):
    client = clinic_a.client_as("clinic_admin")
    for path in concrete_paths():
        if path.startswith("/staff/"):
            response = client.get(path)
            assert_security_headers(response, f"staff GET {path} -> {response.status_code}")


def test_unknown_host_and_health_check_have_the_headers(db):
    assert_security_headers(Client(HTTP_HOST="nowhere.localhost").get("/"), "unknown host")
    assert_security_headers(Client(HTTP_HOST="10.0.0.1").get("/healthz"), "health")


def test_payment_is_allowed_for_the_processor_script_host(settings):
    settings.STRIPE_JS_URL = "https://js.stripe.com/v3/"
    response = platform_client().get("/")
    assert 'payment=(self "https://js.stripe.com")' in response["Permissions-Policy"]


def test_policy_reports_violations_to_the_report_endpoint():
    response = platform_client().get("/")
    csp = response["Content-Security-Policy"]
    assert "report-uri /csp-report/" in csp
    assert "report-to csp-endpoint" in csp
    assert response["Reporting-Endpoints"] == 'csp-endpoint="/csp-report/"'


def test_production_settings_send_hsts_with_subdomains_and_preload(monkeypatch, tmp_path):
    loaded = load_settings(monkeypatch, production_environment(tmp_path))
    assert loaded["SECURE_HSTS_SECONDS"] >= 31536000
    assert loaded["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert loaded["SECURE_HSTS_PRELOAD"] is True
    assert loaded["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert loaded["SECURE_REFERRER_POLICY"] == "same-origin"
    assert loaded["SECURE_CROSS_ORIGIN_OPENER_POLICY"] == "same-origin"
    assert loaded["X_FRAME_OPTIONS"] == "DENY"
    assert loaded["CONTENT_SECURITY_POLICY"]["DIRECTIVES"]["frame-ancestors"] == ["'none'"]
    assert loaded["MIDDLEWARE"][0] == "security.headers.SecurityHeadersMiddleware"


# --- The report endpoint ----------------------------------------------------------------

LEGACY_REPORT = {
    "csp-report": {
        "document-uri": "https://alpha.localhost/pay/abc/?token=secret#frag",
        "referrer": "",
        "violated-directive": "script-src-elem",
        "effective-directive": "script-src-elem",
        "original-policy": "default-src 'self'",
        "blocked-uri": "https://evil.example/skim.js?card=4242424242424242",
        "status-code": 200,
    }
}

REPORTING_API_REPORT = [
    {
        "type": "csp-violation",
        "age": 10,
        "url": "https://alpha.localhost/staff/?q=1",
        "user_agent": "Mozilla/5.0",
        "body": {
            "documentURL": "https://alpha.localhost/staff/?q=1",
            "blockedURL": "inline",
            "effectiveDirective": "style-src-attr",
            "disposition": "enforce",
        },
    },
    {"type": "deprecation", "body": {"id": "x"}},
]


def _post(client: Client, body: object, content_type: str = "application/csp-report"):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post("/csp-report/", data=data, content_type=content_type)


def test_legacy_report_is_stored_without_full_urls(clinic_a):
    client = clinic_a.client(enforce_csrf_checks=True)  # browsers send no CSRF token
    assert _post(client, LEGACY_REPORT).status_code == 204
    violation = CspViolation.objects.get()
    assert violation.tenant == clinic_a.tenant
    assert violation.directive == "script-src-elem"
    assert violation.blocked == "https://evil.example"
    assert violation.document_path == "/pay/abc/"
    assert "4242" not in violation.blocked and "secret" not in violation.document_path


def test_reporting_api_report_is_stored_on_the_platform_host():
    client = platform_client(enforce_csrf_checks=True)
    assert _post(client, REPORTING_API_REPORT, "application/reports+json").status_code == 204
    violation = CspViolation.objects.get()
    assert violation.tenant is None
    assert (violation.directive, violation.blocked, violation.document_path) == ("style-src-attr", "inline", "/staff/")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"[" * 5000 + b"]" * 5000,
        b'{"csp-report": "nope"}',
        b'{"csp-report": {"effective-directive": 5, "blocked-uri": ["x"]}}',
        b'{"csp-report": {"effective-directive": "img-src", "blocked-uri": "http://[bad", "document-uri": 7}}',
        b'[{"type": "csp-violation", "body": "x"}, 3, null]',
        b"\xff\xfe\x00garbage",
    ],
)
def test_garbage_never_causes_a_server_error(body):
    response = _post(platform_client(), body)
    assert response.status_code in (204, 400, 415)


def test_only_post_and_report_content_types_and_small_bodies():
    client = platform_client()
    assert client.get("/csp-report/").status_code == 405
    assert _post(client, LEGACY_REPORT, "text/plain").status_code == 415
    big = json.dumps({"csp-report": {"effective-directive": "img-src", "x": "a" * CSP_REPORT_MAX_BYTES}})
    assert _post(client, big).status_code == 413
    assert not CspViolation.objects.exists()


def test_reports_are_rate_limited_per_ip():
    client = platform_client()
    statuses = [_post(client, LEGACY_REPORT).status_code for _ in range(CSP_REPORT_RATE_LIMIT + 2)]
    assert statuses[:CSP_REPORT_RATE_LIMIT] == [204] * CSP_REPORT_RATE_LIMIT
    assert statuses[-1] == 429
    assert CspViolation.objects.count() == CSP_REPORT_RATE_LIMIT
    other = platform_client(REMOTE_ADDR="10.9.8.7")
    assert _post(other, LEGACY_REPORT).status_code == 204
