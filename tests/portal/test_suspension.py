"""A suspended clinic: patients see "temporarily unavailable", staff cannot sign in or go on, nothing is deleted."""

from __future__ import annotations

import pytest
from django.urls import reverse

from billing.models import Patient, Statement
from portal.tenancy.context import tenant_scope
from security.clinics import clinic_reactivate, clinic_suspend
from security.models import Role
from tests.conftest import Clinic, password_step
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

REASON = "Clinic asked to pause online payments"


@pytest.fixture
def operator():
    return UserFactory.create(email="op@platform.example", is_platform_operator=True, is_staff=True)


def _unavailable(response) -> bool:
    return response.status_code == 503 and b"Temporarily unavailable" in response.content


def test_patients_see_a_friendly_unavailable_page(clinic_a: Clinic, clinic_b: Clinic, operator):
    clinic_a.tenant.support_phone = "+1 555 0100"
    clinic_a.tenant.save(update_fields=["support_phone"])
    clinic_suspend(actor=operator, tenant=clinic_a.tenant, reason=REASON)
    for path in ("/", f"/pay/{clinic_a.statement.public_id}/", "/no-such-page/"):
        response = clinic_a.client().get(path)
        assert _unavailable(response), (path, response.status_code)
    page = clinic_a.client().get("/").content.decode()
    assert "Alpha Clinic" in page and "+1 555 0100" in page
    assert REASON not in page, "the operator's reason is not for patients"
    assert clinic_b.client().get("/").status_code == 200, "other clinics are untouched"


def test_staff_cannot_sign_in(clinic_a: Clinic, operator):
    clinic_suspend(actor=operator, tenant=clinic_a.tenant, reason=REASON)
    client = clinic_a.client()
    assert _unavailable(client.get(reverse("staff:login")))
    response = password_step(client, clinic_a.user(Role.CLINIC_ADMIN).email)
    assert _unavailable(response)
    assert "_auth_user_id" not in client.session


def test_a_live_staff_session_is_refused_on_its_next_request_and_works_after_reactivation(clinic_a, operator):
    client = clinic_a.client_as(Role.BILLING_MANAGER)
    assert client.get(reverse("staff:payments")).status_code == 200
    clinic_suspend(actor=operator, tenant=clinic_a.tenant, reason=REASON)
    assert _unavailable(client.get(reverse("staff:payments")))
    assert _unavailable(client.post(reverse("staff:logout")))
    clinic_reactivate(actor=operator, tenant=clinic_a.tenant)
    assert client.get(reverse("staff:payments")).status_code == 200


def test_nothing_is_deleted(clinic_a: Clinic, operator):
    with tenant_scope(clinic_a.tenant):
        before = (Patient.objects.count(), Statement.objects.count())
    clinic_suspend(actor=operator, tenant=clinic_a.tenant, reason=REASON)
    clinic_reactivate(actor=operator, tenant=clinic_a.tenant)
    with tenant_scope(clinic_a.tenant):
        assert (Patient.objects.count(), Statement.objects.count()) == before
    assert clinic_a.client().get("/").status_code == 200


def test_the_processor_webhook_still_reaches_a_suspended_clinic(clinic_a: Clinic, operator):
    """Payments already under way settle: the webhook is on the platform host, not the clinic's."""
    from tests.conftest import platform_client

    clinic_suspend(actor=operator, tenant=clinic_a.tenant, reason=REASON)
    response = platform_client().post(
        f"/webhooks/stripe/{clinic_a.tenant.public_id}/", data=b"{}", content_type="application/json"
    )
    assert response.status_code == 400, "refused for its missing signature, not as an unknown clinic (404)"
