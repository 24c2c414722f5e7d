"""Audit coverage scenarios: the platform console (see tests/audit/scenarios.py).

A platform operator, signed in with both factors on the platform host,
onboards, edits, suspends and reactivates a clinic, invites its admin and
checks its custom domain through the console's pages.
"""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from portal.models import Tenant
from security.domains import set_txt_resolver
from tests.audit.scenarios import scenario
from tests.conftest import platform_client
from tests.factories import UserFactory

SUSPEND_REASON = "Coverage: the clinic asked to pause its portal."


def _operator() -> Client:
    operator = UserFactory.create(email="console-operator@platform.example", is_platform_operator=True, is_staff=True)
    return platform_client(user=operator)


def _profile(tenant: Tenant, **changes: str) -> dict[str, str]:
    data = {
        "name": tenant.name,
        "timezone": tenant.timezone,
        "support_phone": tenant.support_phone,
        "support_email": tenant.support_email,
        "custom_domain": tenant.custom_domain or "",
    }
    return {**data, **changes}


def _clinic_url(clinic, name: str) -> str:
    return reverse(f"platform:{name}", kwargs={"tenant_id": clinic.tenant.public_id})


@scenario("platform.clinic_created")
def _created(clinic) -> None:
    data = {"name": "Coverage Clinic", "slug": "coverage", "timezone": "America/Chicago", "currency": "USD"}
    response = _operator().post(reverse("platform:clinic-new"), data)
    assert response.status_code == 302, response.status_code


@scenario("platform.clinic_updated")
def _updated(clinic) -> None:
    response = _operator().post(_clinic_url(clinic, "clinic-edit"), _profile(clinic.tenant, name="Alpha Renamed"))
    assert response.status_code == 302, response.status_code


@scenario("platform.clinic_suspended")
def _suspended(clinic) -> None:
    response = _operator().post(_clinic_url(clinic, "clinic-suspend"), {"reason": SUSPEND_REASON})
    assert response.status_code == 302, response.status_code


@scenario("platform.clinic_reactivated")
def _reactivated(clinic) -> None:
    client = _operator()
    assert client.post(_clinic_url(clinic, "clinic-suspend"), {"reason": SUSPEND_REASON}).status_code == 302
    assert client.post(_clinic_url(clinic, "clinic-reactivate")).status_code == 302


@scenario("platform.admin_invited")
def _admin_invited(clinic) -> None:
    response = _operator().post(_clinic_url(clinic, "clinic-invite"), {"admin_email": "new-admin@alpha.example"})
    assert response.status_code == 302, response.status_code


@scenario("platform.domain_verified")
def _domain_verified(clinic) -> None:
    client = _operator()
    edit = client.post(_clinic_url(clinic, "clinic-edit"), _profile(clinic.tenant, custom_domain="pay.alpha.example"))
    assert edit.status_code == 302, edit.status_code
    token = Tenant.objects.get(pk=clinic.tenant.pk).custom_domain_token
    set_txt_resolver(lambda name: [token] if name == "_settle-verify.pay.alpha.example" else [])
    try:
        assert client.post(_clinic_url(clinic, "clinic-domain-verify")).status_code == 302
    finally:
        set_txt_resolver(None)
    assert Tenant.objects.get(pk=clinic.tenant.pk).custom_domain_verified_at is not None
