"""CSRF on every POST; the only exempt endpoints are signed webhooks (SECURITY.md).

Walks the whole URL configuration, the Django admin included, and POSTs to
every route without a CSRF token, from a client that enforces CSRF as a
browser's requests are checked. Each is refused with Django's CSRF failure
(403), except the allow-list below. The POSTs come from someone the view
would otherwise serve (an MFA-verified persona holding the view's permission,
a guest on public pages, a verified operator in the admin), so the 403 is
the CSRF check and not a permission check.

Independently of what the requests answer, every resolved view callback is
inspected for Django's `csrf_exempt` flag: an exempt view that is not on the
allow-list fails, and so does an allow-list entry that is no longer exempt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from django.conf import settings
from django.test import Client
from django.urls import resolve

from tests.conftest import Clinic, login_verified, platform_client
from tests.security.url_samples import (
    ANONYMOUS,
    OPERATOR_EMAIL,
    Route,
    admin_paths,
    operator_user,
    persona_user,
    routes,
)

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

pytestmark = pytest.mark.django_db

# view -> why it may take a POST without a CSRF token. Nothing else may.
CSRF_EXEMPT_ALLOWED: dict[str, str] = {
    "billing.views.webhooks.stripe_webhook": "the processor signs the raw body (Stripe-Signature)",
    "security.headers.csp_report": "browsers send reports without a token; it only records a violation row",
}

CSRF_FAILURE = b"CSRF verification failed"


def _view_name(view: Callable[..., Any]) -> str:
    return f"{view.__module__}.{getattr(view, '__qualname__', getattr(view, '__name__', repr(view)))}"


def _strict_client(host: str) -> Client:
    return Client(enforce_csrf_checks=True, HTTP_HOST=host)


def _route_client(clinic: Clinic, route: Route) -> Client:
    """A CSRF-enforcing client the route would otherwise serve."""
    if route.on_platform_host:
        return _strict_client(settings.SETTLE_PLATFORM_HOST)
    client = _strict_client(clinic.host)
    persona = route.owner()
    user = persona_user(clinic, persona) if persona != ANONYMOUS else None
    if user is not None:
        login_verified(client, user)
    return client


def _assert_csrf_refused(response: TestResponse, where: str) -> None:
    assert response.status_code == 403, f"POST {where} without a CSRF token: {response.status_code}"
    assert CSRF_FAILURE in response.content, f"POST {where}: a 403 that is not the CSRF check"


@pytest.mark.parametrize("route", [pytest.param(r, id=f"{r.label} {r.view_name}") for r in routes()])
def test_post_without_a_token_is_refused(clinic_a: Clinic, route: Route):
    path = route.path(clinic_a)
    response = _route_client(clinic_a, route).post(path, {})
    where = f"{path} ({route.view_name})"
    if route.view_name in CSRF_EXEMPT_ALLOWED:
        assert response.status_code != 403, f"POST {where}: the exempt endpoint refused a token-less request"
        assert getattr(route.view, "csrf_exempt", False) is True
    else:
        _assert_csrf_refused(response, where)


@pytest.mark.parametrize("path", admin_paths())
def test_admin_post_without_a_token_is_refused(path: str):
    client = _strict_client(settings.SETTLE_PLATFORM_HOST)
    login_verified(client, operator_user(OPERATOR_EMAIL))
    _assert_csrf_refused(client.post(path, {}), path)


def test_exempt_views_are_exactly_the_allow_list(clinic_a: Clinic):
    """Every resolved callback of the configuration, admin included, checked for csrf_exempt."""
    exempt: set[str] = set()
    for route in routes():
        for view in (route.view, resolve(route.path(clinic_a)).func):
            if getattr(view, "csrf_exempt", False):
                exempt.add(_view_name(view))
    for path in admin_paths():
        view = resolve(path).func
        if getattr(view, "csrf_exempt", False):
            exempt.add(_view_name(view))
    assert exempt == set(CSRF_EXEMPT_ALLOWED), (
        f"csrf_exempt views not on the allow-list: {sorted(exempt - set(CSRF_EXEMPT_ALLOWED))}; "
        f"allow-list entries that are not exempt (or not routed): {sorted(set(CSRF_EXEMPT_ALLOWED) - exempt)}"
    )


def test_the_walk_would_see_an_exempt_view():
    from django.views.decorators.csrf import csrf_exempt

    @csrf_exempt
    def exempt_view(request: Any) -> None:  # pragma: no cover - never called
        return None

    assert getattr(exempt_view, "csrf_exempt", False) is True
    assert _view_name(exempt_view).endswith("exempt_view")


def test_the_exempt_endpoints_authenticate_otherwise(clinic_a: Clinic):
    """Without a token the webhook still needs its signature, and the report endpoint takes only reports."""
    webhook = _strict_client(settings.SETTLE_PLATFORM_HOST).post(
        f"/webhooks/stripe/{clinic_a.tenant.public_id}/", data=b"{}", content_type="application/json"
    )
    assert webhook.status_code == 400
    report = platform_client(enforce_csrf_checks=True).post("/csp-report/", {"a": "b"})
    assert report.status_code == 415


def test_a_token_lets_the_same_post_through(clinic_a: Clinic):
    """The control: the refusals above are the missing token, not the request."""
    client = _strict_client(clinic_a.host)
    login_verified(client, clinic_a.user("front_desk"))
    client.get("/staff/sessions/")  # sets the CSRF cookie
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    assert client.post("/staff/sessions/end-others/", {"csrfmiddlewaretoken": token}).status_code == 302
