"""Password-only sessions are sent to the OTP step on every staff URL (SECURITY.md).

Generated from the URL walk. For every view declared with require_permission:
a session that gave only a password (client.force_login, no second factor)
is redirected to /staff/mfa/?next=<the path>, for GET and for POST alike, by
a user who would otherwise be served (the persona holding the permission,
with every per-user sample its own); an anonymous visitor is redirected to
the sign-in page. The Django admin on the platform host, walked too, never
shows a page to an operator who has not given a second factor.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse
from django.utils.http import urlencode

from tests.conftest import Clinic, login_verified
from tests.security.url_samples import (
    OPERATOR_EMAIL,
    Route,
    admin_paths,
    guarded_routes,
    host_client,
    operator_user,
    persona_user,
)

pytestmark = pytest.mark.django_db

GUARDED = [pytest.param(route, id=route.label) for route in guarded_routes()]
MAX_ADMIN_HOPS = 5


def _password_only(clinic: Clinic, route: Route) -> Client:
    user = persona_user(clinic, route.owner())
    assert user is not None
    client = host_client(clinic, route)
    client.force_login(user)
    return client


def _location(response: HttpResponse) -> tuple[str, dict[str, list[str]]]:
    parts = urlsplit(response["Location"])
    return parts.path, parse_qs(parts.query)


@pytest.mark.parametrize("route", GUARDED)
def test_password_only_session_is_sent_to_the_second_factor(clinic_a: Clinic, route: Route):
    path = route.path(clinic_a)
    client = _password_only(clinic_a, route)
    for method in ("get", "post"):
        response = getattr(client, method)(path)
        where = f"{method.upper()} {path} as {route.owner()} with a password only"
        assert response.status_code == 302, f"{where}: {response.status_code}"
        assert response["Location"] == f"{reverse('staff:mfa')}?{urlencode({'next': path})}", where


@pytest.mark.parametrize("route", GUARDED)
def test_anonymous_visitor_is_sent_to_sign_in(clinic_a: Clinic, route: Route):
    path = route.path(clinic_a)
    client = host_client(clinic_a, route)
    for method in ("get", "post"):
        response = getattr(client, method)(path)
        where = f"anonymous {method.upper()} {path}"
        assert response.status_code == 302, f"{where}: {response.status_code}"
        assert _location(response) == (reverse("staff:login"), {"next": [path]}), where


def _admin_hops(client: Client, path: str) -> list[tuple[str, int]]:
    """Follow redirects while they stay in the admin; (path, status) of each hop."""
    hops: list[tuple[str, int]] = []
    target = path
    for _ in range(MAX_ADMIN_HOPS):
        response = client.get(target)
        hops.append((target, response.status_code))
        if response.status_code != 302:
            return hops
        target = response["Location"]
        if not urlsplit(target).path.startswith("/admin/"):
            hops.append((target, 0))  # left the admin: where it sends the user
            return hops
    return hops


@pytest.mark.parametrize("path", admin_paths())
def test_admin_needs_a_second_factor(path: str):
    client = Client(HTTP_HOST=settings.SETTLE_PLATFORM_HOST)
    client.force_login(operator_user(OPERATOR_EMAIL))
    hops = _admin_hops(client, path)
    final, status = hops[-1]
    assert status == 0, f"{path} with a password only: the admin answered {hops}"
    assert urlsplit(final).path == reverse("staff:mfa"), f"{path} with a password only: {hops}"


@pytest.mark.parametrize("path", admin_paths())
def test_anonymous_admin_visitor_is_sent_to_sign_in(path: str):
    hops = _admin_hops(Client(HTTP_HOST=settings.SETTLE_PLATFORM_HOST), path)
    final, status = hops[-1]
    assert status == 0, f"anonymous {path}: the admin answered {hops}"
    assert urlsplit(final).path == reverse("staff:login"), f"anonymous {path}: {hops}"


def test_the_admin_opens_once_the_second_factor_is_given():
    """The control: the same operator with both factors gets the admin."""
    client = Client(HTTP_HOST=settings.SETTLE_PLATFORM_HOST)
    login_verified(client, operator_user(OPERATOR_EMAIL))
    assert client.get(reverse("admin:index")).status_code == 200
