"""The role x view matrix, generated from the permission registry and the URL walk.

For every view declared with require_permission and every persona (each role
of security.permissions.ACCESS_ROLES, plus an outsider with no membership), a
GET of the view with the clinic's own ids answers 403 exactly when the
persona lacks the view's permission, and something other than 403/404 when
it holds it (200, a redirect, 400 for a bad form, or 405 from a POST-only
view: the method check comes after the permission check). A view or a role
added later is in the matrix without editing this file.

Navigation: the pages a persona can open link only to views it may use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from django.urls import Resolver404, resolve, reverse

from billing.processor import set_processor_factory
from security.permissions import ACCESS_ROLES, PERMISSIONS, permissions_for_role
from tests.billing.fakes import FakeProcessor
from tests.conftest import Clinic
from tests.security.test_permission_walk import declared_access
from tests.security.url_samples import OUTSIDER, PERSONAS, Route, guarded_routes, persona_client, route_client

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

pytestmark = pytest.mark.django_db

# What a persona holding the permission may get back; never 403 or 404.
ALLOWED_STATUSES = {200, 302, 400, 405}

MATRIX = [
    pytest.param(route, persona, id=f"{route.label} as {persona}") for route in guarded_routes() for persona in PERSONAS
]

# The staff navigation's sections and the permission each needs.
NAV_SECTIONS: dict[str, str] = {
    "/staff/payments/": "payments.view",
    "/staff/audit/": "audit.view",
    "/staff/keys/": "keys.rotate",
    "/staff/team/": "staff.manage",
    "/staff/break-glass/": "platform.break_glass",
    "/staff/settings/": "settings.manage",
}

_HREF = re.compile(r"""href\s*=\s*["']([^"']*)["']""")


def _hrefs(response: TestResponse) -> list[str]:
    if not response.get("Content-Type", "").startswith("text/html"):
        return []
    return _HREF.findall(response.content.decode())


def forbidden_links(response: TestResponse, persona: str) -> list[str]:
    """Links of the page to views of this site that `persona` may not use."""
    held = permissions_for_role(persona)
    forbidden = []
    for href in _hrefs(response):
        parts = urlsplit(href)
        if parts.scheme or parts.netloc or not parts.path.startswith("/"):
            continue  # another site, or a fragment
        try:
            match = resolve(parts.path)
        except Resolver404:
            continue
        access = declared_access(match.func)
        if access not in (None, "public") and access not in held:
            forbidden.append(f"{href} (needs {access})")
    return forbidden


def test_the_matrix_covers_every_guarded_view_and_every_persona():
    routes = guarded_routes()
    assert routes, "no require_permission views were found"
    assert len(MATRIX) == len(routes) * len(PERSONAS)
    assert set(PERSONAS) == {*ACCESS_ROLES, OUTSIDER}
    assert {route.label for route in routes} >= {"/staff/", "/staff/payments/", "/staff/audit/", "/staff/keys/"}


def test_every_permission_guards_a_view():
    """A permission no view declares is a registry entry nothing enforces."""
    used = {route.access for route in guarded_routes()}
    assert set(PERMISSIONS) - used == set()


@pytest.fixture(autouse=True)
def _fake_processor() -> Iterator[FakeProcessor]:
    """Staff pages that reach the processor (the phone payment's card form) reach a fake one."""
    fake = FakeProcessor()
    set_processor_factory(lambda tenant, account: fake)
    yield fake
    set_processor_factory(None)


@pytest.mark.parametrize(("route", "persona"), MATRIX)
def test_persona_gets_403_exactly_when_it_lacks_the_permission(clinic_a: Clinic, route: Route, persona: str):
    path = route.path(clinic_a)
    response = route_client(clinic_a, route, persona).get(path)
    where = f"GET {path} as {persona} (needs {route.access})"
    if route.allowed(persona):
        assert response.status_code in ALLOWED_STATUSES, f"{where}: {response.status_code}, expected the page"
    else:
        assert response.status_code == 403, f"{where}: {response.status_code}, expected 403"
    bad = forbidden_links(response, persona)
    assert not bad, f"{where} links to views {persona} may not use: {bad}"


@pytest.mark.parametrize("persona", PERSONAS)
def test_staff_navigation_offers_only_the_sections_the_role_may_use(clinic_a: Clinic, persona: str):
    response = persona_client(clinic_a, persona).get(reverse("staff:dashboard"))
    held = permissions_for_role(persona)
    assert response.status_code == (200 if "dashboard.view" in held else 403)
    hrefs = _hrefs(response)
    for section, permission in NAV_SECTIONS.items():
        linked = any(urlsplit(href).path.startswith(section) for href in hrefs)
        if permission not in held:
            assert not linked, f"the dashboard offers {section} to {persona}, who lacks {permission}"
        elif response.status_code == 200:
            assert linked, f"the dashboard hides {section} from {persona}, who holds {permission}"
    assert not forbidden_links(response, persona)
