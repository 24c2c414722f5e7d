"""The platform host: Django admin for operators only, and the health check."""

from __future__ import annotations

import pytest
from django.test import Client

from portal.services import tenant_create
from security.models import User
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinic():
    return tenant_create(slug="gamma", name="Gamma Clinic")


@pytest.mark.parametrize("path", ["/admin/", "/admin/login/", "/admin/portal/tenant/"])
def test_admin_is_not_served_on_a_clinic_host(clinic, path):
    assert Client(HTTP_HOST="gamma.localhost").get(path).status_code == 404


def test_admin_login_is_the_one_staff_sign_in_on_the_platform_host(clinic):
    response = Client(HTTP_HOST="localhost").get("/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert response["Location"] == "/staff/login/?next=%2Fadmin%2F"
    assert Client(HTTP_HOST="localhost").get(response["Location"]).status_code == 200


def test_only_platform_operators_may_use_the_admin(clinic):
    staff = User.objects.create_user("staff@example.com", "a-long-password-123", is_staff=True)
    operator = User.objects.create_user(
        "op@example.com", "a-long-password-123", is_staff=True, is_platform_operator=True, is_superuser=True
    )
    client = Client(HTTP_HOST="localhost")
    login_verified(client, staff)
    assert client.get("/admin/portal/tenant/").status_code == 302  # back to login
    client = Client(HTTP_HOST="localhost")
    client.force_login(operator)
    response = client.get("/admin/portal/tenant/")
    assert response.status_code == 302, "an operator without a second factor this session is not let in"
    assert client.get(response["Location"])["Location"].startswith("/staff/mfa/")
    login_verified(client, operator)
    assert client.get("/admin/portal/tenant/").status_code == 200


def test_health_check_answers_any_host_without_a_tenant():
    # Load balancers probe by IP; the host is not validated for /healthz.
    response = Client(HTTP_HOST="10.1.2.3").get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}
