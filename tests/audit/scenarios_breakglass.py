"""Audit coverage scenarios: breakglass (see tests/audit/scenarios.py).

A platform operator, signed in with both factors at the clinic's host,
starts (and ends) emergency access through the break-glass page.
"""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from portal.tenancy.context import tenant_scope
from security.models import BreakGlassGrant
from tests.audit.scenarios import scenario
from tests.factories import UserFactory

REASON = "Coverage: the clinic's only admin is locked out and asked for help."


def _operator_client(clinic) -> Client:
    operator = UserFactory.create(email="coverage-operator@platform.example", is_platform_operator=True, is_staff=True)
    return clinic.client(operator)


def _start(clinic, client: Client) -> BreakGlassGrant:
    response = client.post(reverse("breakglass:start"), {"reason": REASON, "minutes": "15"})
    assert response.status_code == 302, response.status_code
    with tenant_scope(clinic.tenant):
        return BreakGlassGrant.objects.get(tenant=clinic.tenant, ended_at__isnull=True)


@scenario("breakglass.started")
def _started(clinic) -> None:
    _start(clinic, _operator_client(clinic))


@scenario("breakglass.ended")
def _ended(clinic) -> None:
    client = _operator_client(clinic)
    grant = _start(clinic, client)
    response = client.post(reverse("breakglass:end", kwargs={"grant_id": grant.public_id}))
    assert response.status_code == 302, response.status_code
