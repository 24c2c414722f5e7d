"""Fixtures for billing tests: a scripted processor and a clinic with a bill."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from billing.models import CardCheckPolicy, Statement
from billing.processor import set_processor_factory
from billing.services.processor_accounts import processor_account_set
from billing.services.statements import patient_create, statement_issue
from portal.models import Tenant
from portal.services import tenant_create
from portal.tenancy.context import tenant_scope
from tests.billing.fakes import FakeProcessor

DOB = datetime.date(1984, 2, 29)


@pytest.fixture
def fake_processor() -> Iterator[FakeProcessor]:
    fake = FakeProcessor()
    set_processor_factory(lambda tenant, account: fake)
    yield fake
    set_processor_factory(None)


@dataclass
class Bill:
    tenant: Tenant
    statement: Statement
    webhook_secret: str

    def client(self, **extra: Any) -> Client:
        return Client(HTTP_HOST=f"{self.tenant.slug}.localhost", **extra)


@pytest.fixture
def make_bill(db: None) -> Callable[..., Bill]:
    def make(
        slug: str = "alpha",
        *,
        amount_minor: int = 12_500,
        policy: str = CardCheckPolicy.FLAG,
        minimum_payment_minor: int = 100,
        number: str = "ST-1001",
    ) -> Bill:
        tenant = Tenant.objects.filter(slug=slug).first() or tenant_create(
            slug=slug, name=f"{slug.title()} Clinic", minimum_payment_minor=minimum_payment_minor
        )
        secret = f"whsec_{slug}_test"
        with tenant_scope(tenant):
            processor_account_set(
                tenant=tenant,
                publishable_key=f"pk_test_{slug}",
                secret_key=f"sk_test_{slug}",
                webhook_secret=secret,
                card_check_policy=policy,
            )
            patient = patient_create(
                tenant=tenant,
                account_number=f"ACC-{number}",
                first_name="Robin",
                last_name="Testpatient",
                date_of_birth=DOB,
            )
            statement = statement_issue(
                tenant=tenant,
                patient=patient,
                number=number,
                statement_date=datetime.date(2026, 11, 1),
                due_date=datetime.date(2026, 12, 1),
                amount_due_minor=amount_minor,
                summary="Office visit",
            )
        return Bill(tenant=tenant, statement=statement, webhook_secret=secret)

    return make


@dataclass
class OpenCheckout:
    client: Client
    pay_url: str
    config: dict[str, str]

    def submit(self, amount: str, setup_intent_id: str | None = None, **extra: Any) -> tuple[int, dict]:  # type: ignore[type-arg]
        data = {"amount": amount, "setup_intent_id": setup_intent_id or self.config["setupIntentId"], **extra}
        response = self.client.post(self.config["submitUrl"], data)
        return response.status_code, response.json()


def open_checkout(bill: Bill, client: Client | None = None) -> OpenCheckout:
    """Look the statement up and load the payment page, as a patient does."""
    client = client or bill.client()
    response = client.post("/", {"statement_number": bill.statement.number, "date_of_birth": DOB.isoformat()})
    assert response.status_code == 302, response.content
    pay_url = response["Location"]
    page = client.get(pay_url)
    assert page.status_code == 200
    marker = 'id="checkout-config" type="application/json">'
    config = json.loads(page.content.decode().split(marker, 1)[1].split("</script>", 1)[0])
    return OpenCheckout(client=client, pay_url=pay_url, config=config)
