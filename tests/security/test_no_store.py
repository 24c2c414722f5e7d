"""No page that can carry PHI, card details or secrets may be kept by a cache (OWASP ASVS 8.2.1).

Walks every route of the URL configuration (tests/security/url_samples.py, so
views added later are walked too) with the clinic's own ids, as someone the
view serves: the persona that holds its permission and owns its samples, a
guest whose browser opened the checkout on patient pages, the platform host
for the webhook. Every answer (page, JSON, PDF, CSV, redirect, form error,
405) is `Cache-Control: no-store`, except the views declared cacheable assets
(security.caching.cacheable_asset), which must be exactly CACHEABLE_ASSETS.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from django.urls import resolve

from billing.processor import set_processor_factory
from security.caching import NO_STORE, apply_no_store, cacheable_asset, is_cacheable_view
from tests.billing.fakes import FakeProcessor
from tests.conftest import Clinic, platform_client
from tests.security.url_samples import ANONYMOUS, Route, guest_client, persona_client, routes

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

pytestmark = pytest.mark.django_db

# Views whose responses caches may keep, and why they hold nothing about anyone.
CACHEABLE_ASSETS: dict[str, str] = {
    "portal.branding.branding_css": "the clinic's brand colour as CSS",
    "portal.branding.branding_logo": "the clinic's logo image",
}

# Pages the brief names as carrying PHI or secrets; the walk must meet each.
SENSITIVE_VIEWS = {
    "billing.views.patient.pay",
    "billing.views.patient.payment_result",
    "billing.views.patient.payment_receipt_pdf",
    "billing.views.staff.patients",
    "billing.views.staff.patient_ledger",
    "billing.views.staff.payments",
    "audit.views.search",
    "audit.views.event_detail",
    "security.views.keys",
}


@pytest.fixture(autouse=True)
def _fake_processor() -> Iterator[FakeProcessor]:
    """Pages that reach the processor reach a fake one (no network)."""
    fake = FakeProcessor()
    set_processor_factory(lambda tenant, account: fake)
    yield fake
    set_processor_factory(None)


def _client(clinic: Clinic, route: Route) -> Client:
    if route.on_platform_host:
        return platform_client()
    persona = route.owner()
    if persona == ANONYMOUS:
        return guest_client(clinic, clinic)
    return persona_client(clinic, persona)


def _cache_directives(response: TestResponse) -> set[str]:
    return {part.strip().lower() for part in response.get("Cache-Control", "").split(",") if part.strip()}


WALK = [pytest.param(route, id=f"{route.label} {route.view_name}") for route in routes()]


@pytest.mark.parametrize("route", WALK)
def test_every_route_answers_no_store(clinic_a: Clinic, route: Route):
    path = route.path(clinic_a)
    client = _client(clinic_a, route)
    answers = [("GET", client.get(path))]
    if answers[0][1].status_code == 405:
        answers.append(("POST", client.post(path, {})))
    for method, response in answers:
        where = f"{method} {path} ({route.view_name}) -> {response.status_code} {response.get('Content-Type')}"
        if route.view_name in CACHEABLE_ASSETS:
            assert NO_STORE not in _cache_directives(response) or response.status_code >= 400, where
            continue
        assert NO_STORE in _cache_directives(response), f"{where}: Cache-Control {response.get('Cache-Control')!r}"


def test_the_walk_meets_the_pages_that_show_phi_and_secrets():
    walked = {route.view_name for route in routes()}
    assert walked >= SENSITIVE_VIEWS


def test_cacheable_assets_are_exactly_the_allow_list():
    declared = {route.view_name for route in routes() if is_cacheable_view(route.view)}
    assert declared == set(CACHEABLE_ASSETS), (
        f"views declared cacheable but not allowed here: {sorted(declared - set(CACHEABLE_ASSETS))}; "
        f"allowed but not declared: {sorted(set(CACHEABLE_ASSETS) - declared)}"
    )


def test_a_sensitive_page_and_its_errors_are_no_store(clinic_a: Clinic):
    client = persona_client(clinic_a, "front_desk")
    for path in ("/staff/patients/", f"/staff/patients/{clinic_a.patient.public_id}/", "/staff/no-such-page/"):
        assert client.get(path)["Cache-Control"] == NO_STORE, path
    # A permission refusal (403) and the sign-in redirect too.
    assert NO_STORE in _cache_directives(persona_client(clinic_a, "front_desk").get("/staff/audit/"))
    assert NO_STORE in _cache_directives(clinic_a.client().get("/staff/patients/"))


def test_the_brand_stylesheet_stays_cacheable(clinic_a: Clinic):
    response = clinic_a.client().get("/branding.css")
    assert response.status_code == 200
    assert response["Cache-Control"] == "public, max-age=300"


def test_static_files_keep_their_own_caching(clinic_a: Clinic):
    response = clinic_a.client().get(settings.STATIC_URL + "css/settle.css")
    assert response.status_code == 200
    assert NO_STORE not in _cache_directives(response)


def _request(path: str, view: object | None) -> HttpRequest:
    request = RequestFactory().get(path)
    request.resolver_match = resolve("/branding.css") if view == "asset" else None
    return request


def test_a_view_that_sets_public_caching_without_declaring_itself_an_asset_is_overridden():
    response = HttpResponse("patient data")
    response["Cache-Control"] = "public, max-age=300"
    apply_no_store(_request("/staff/patients/", None), response)
    assert response["Cache-Control"] == NO_STORE


def test_never_cache_headers_are_kept_and_assets_untouched():
    response = HttpResponse()
    response["Cache-Control"] = "max-age=0, no-cache, no-store, must-revalidate, private"
    apply_no_store(_request("/staff/login/", None), response)
    assert response["Cache-Control"] == "max-age=0, no-cache, no-store, must-revalidate, private"
    asset = HttpResponse()
    asset["Cache-Control"] = "public, max-age=300"
    apply_no_store(_request("/branding.css", "asset"), asset)
    assert asset["Cache-Control"] == "public, max-age=300"


def test_the_declaration_marks_the_view():
    @cacheable_asset
    def asset(request: HttpRequest) -> HttpResponse:  # pragma: no cover - never called
        return HttpResponse()

    assert is_cacheable_view(asset)
    assert not is_cacheable_view(None)
