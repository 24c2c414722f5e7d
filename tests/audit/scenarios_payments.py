"""Audit coverage scenarios: staff acting on payments (see tests/audit/scenarios.py)."""

from __future__ import annotations

import json

from django.urls import reverse

from billing.models import Payment, PaymentStatus
from billing.processor import set_processor_factory
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.audit.scenarios import scenario
from tests.billing.fakes import FakeProcessor
from tests.conftest import Clinic


@scenario("payment.staff_canceled")
def _staff_canceled(clinic: Clinic) -> None:
    """A guest leaves a payment at 3-D Secure; the front desk cancels it."""
    fake = FakeProcessor(create_outcome="requires_action")
    set_processor_factory(lambda tenant, account: fake)
    try:
        guest = clinic.client()
        dob = clinic.patient.date_of_birth.isoformat()
        found = guest.post("/", {"statement_number": clinic.statement.number, "date_of_birth": dob})
        page = guest.get(found["Location"]).content.decode()
        config = json.loads(page.split('id="checkout-config" type="application/json">', 1)[1].split("</script>", 1)[0])
        fake.complete_setup(config["setupIntentId"])
        guest.post(config["submitUrl"], {"amount": "1.00", "setup_intent_id": config["setupIntentId"]})
        with tenant_scope(clinic.tenant):
            payment = Payment.objects.get(status=PaymentStatus.REQUIRES_ACTION)
        response = clinic.client_as(Role.FRONT_DESK).post(
            reverse("staff:payment-cancel", kwargs={"payment_id": payment.public_id})
        )
        assert response.status_code == 302
    finally:
        set_processor_factory(None)
