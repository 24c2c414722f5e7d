"""Phone payments (virtual terminal): staff key a card for a patient's statement.

Through the staff pages of clinic_a (statement ALPHA-1001, $125.00) with the
scripted processor: the amount is the server's, the payment is recorded with
channel "phone" and the staff member as actor, 3-D Secure is refused and the
attempt canceled, and a phone checkout and a patient's checkout are never
usable on each other's endpoints.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.templatetags.static import static
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from billing.access import SESSION_CHECKOUTS
from billing.models import Checkout, LedgerEntry, Payment, PaymentChannel, PaymentStatus
from billing.processor import set_processor_factory
from billing.services.abandon import abandon_idempotency_key
from billing.services.phone_payments import (
    AUTHENTICATION_REFUSED_CODE,
    AUTHENTICATION_REFUSED_MESSAGE,
    PHONE_CHECKOUT_EXPIRED_MESSAGE,
    phone_checkout_open,
)
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.billing.fakes import FakeProcessor
from tests.conftest import Clinic

pytestmark = pytest.mark.django_db

FRONT_DESK = Role.FRONT_DESK.value
CONFIG_MARKER = 'id="checkout-config" type="application/json">'


@pytest.fixture
def fake() -> Iterator[FakeProcessor]:
    processor = FakeProcessor()
    set_processor_factory(lambda tenant, account: processor)
    yield processor
    set_processor_factory(None)


def _open(clinic: Clinic, client: Client) -> str:
    """Press "Take a phone payment" for the clinic's statement; returns the phone payment page's URL."""
    url = reverse("staff:phone-payment-open", kwargs={"statement_id": clinic.statement.public_id})
    response = client.post(url)
    assert response.status_code == 302, response.content
    return str(response["Location"])


def _config(client: Client, page_url: str) -> dict[str, Any]:
    page = client.get(page_url)
    assert page.status_code == 200
    config: dict[str, Any] = json.loads(page.content.decode().split(CONFIG_MARKER, 1)[1].split("</script>", 1)[0])
    return config


def _submit(client: Client, config: dict[str, Any], fake: FakeProcessor, amount: str) -> tuple[int, dict[str, Any]]:
    fake.complete_setup(config["setupIntentId"])  # as Stripe.js's confirmCardSetup would
    response = client.post(config["submitUrl"], {"amount": amount, "setup_intent_id": config["setupIntentId"]})
    return response.status_code, response.json()


def _events(clinic: Clinic, action: str) -> list[AuditEvent]:
    with tenant_scope(clinic.tenant):
        return list(AuditEvent.objects.filter(tenant=clinic.tenant, action=action).order_by("sequence"))


def test_front_desk_takes_a_phone_payment_recorded_as_phone_by_them(clinic_a: Clinic, fake: FakeProcessor):
    client = clinic_a.client_as(FRONT_DESK)
    desk = clinic_a.user(FRONT_DESK)
    page_url = _open(clinic_a, client)
    config = _config(client, page_url)
    # checkout.js talks to the staff endpoints, not the patient's.
    assert config["submitUrl"].startswith("/staff/phone-payments/")
    assert config["renewUrl"].startswith("/staff/phone-payments/")

    status, body = _submit(client, config, fake, "40.00")

    assert status == 200 and body["state"] == "succeeded", body
    with tenant_scope(clinic_a.tenant):
        payment = Payment.objects.select_related("checkout").get()
        credited = LedgerEntry.objects.get(payment=payment).amount_minor
    assert body["resultUrl"] == reverse("staff:payment", kwargs={"payment_id": payment.public_id})
    assert payment.channel == PaymentChannel.PHONE and payment.status == PaymentStatus.SUCCEEDED
    assert payment.amount_minor == 4000 and credited == -4000
    assert payment.checkout.opened_by == desk and payment.checkout.opened_by_role == FRONT_DESK
    assert fake.calls_named("create_payment")[0]["amount"] == 4000
    # Every act of the checkout names the staff member, never "guest".
    for action in ("phone_payment.opened", "payment.attempted", "payment.succeeded"):
        (event,) = _events(clinic_a, action)
        assert (event.actor_user_id, event.actor_role) == (desk.public_id, FRONT_DESK), action
    # The staff payment page says how it was taken and offers the receipt.
    html = client.get(body["resultUrl"]).content.decode()
    assert 'id="payment-channel">Phone, taken by' in html
    assert reverse("staff:payment-receipt-pdf", kwargs={"payment_id": payment.public_id}) in html


def test_a_patients_own_payment_stays_online_and_guest(clinic_a: Clinic, fake: FakeProcessor):
    client = clinic_a.client()
    response = client.post(
        "/",
        {"statement_number": clinic_a.statement.number, "date_of_birth": clinic_a.patient.date_of_birth.isoformat()},
    )
    config = _config(client, response["Location"])
    status, body = _submit(client, config, fake, "40.00")
    assert body["state"] == "succeeded"
    with tenant_scope(clinic_a.tenant):
        assert Payment.objects.get().channel == PaymentChannel.ONLINE
    (attempted,) = _events(clinic_a, "payment.attempted")
    assert (attempted.actor_user_id, attempted.actor_role) == (None, "guest")


def test_the_amount_is_limited_by_the_balance(clinic_a: Clinic, fake: FakeProcessor):
    client = clinic_a.client_as(FRONT_DESK)
    config = _config(client, _open(clinic_a, client))

    status, body = _submit(client, config, fake, "125.01")

    assert status == 400
    assert body == {
        "state": "invalid",
        "message": "The most you can pay on this statement is $125.00.",
        "field": "amount",
    }
    assert fake.calls_named("create_payment") == []
    with tenant_scope(clinic_a.tenant):
        assert not Payment.objects.exists()


def test_3d_secure_is_refused_and_the_attempt_canceled(clinic_a: Clinic, fake: FakeProcessor):
    client = clinic_a.client_as(FRONT_DESK)
    config = _config(client, _open(clinic_a, client))
    fake.create_outcome = "requires_action"

    status, body = _submit(client, config, fake, "40.00")

    assert status == 200 and body["state"] == "failed"
    assert body["message"] == AUTHENTICATION_REFUSED_MESSAGE
    assert "clientSecret" not in body  # nothing for the browser to authenticate
    assert body["setupIntentId"] != config["setupIntentId"]  # a fresh card form for another card
    (cancel,) = fake.calls_named("cancel_payment")
    with tenant_scope(clinic_a.tenant):
        payment = Payment.objects.get()
        assert not LedgerEntry.objects.filter(payment=payment).exists()
    assert cancel["id"] == payment.processor_payment_intent_id
    assert cancel["idempotency_key"] == abandon_idempotency_key(payment)
    assert payment.status == PaymentStatus.CANCELED
    assert payment.failure_code == AUTHENTICATION_REFUSED_CODE
    (canceled,) = _events(clinic_a, "payment.canceled")
    assert canceled.actor_role == FRONT_DESK and canceled.details["code"] == AUTHENTICATION_REFUSED_CODE


def test_a_statement_with_nothing_due_opens_no_phone_payment(clinic_a: Clinic, fake: FakeProcessor):
    client = clinic_a.client_as(FRONT_DESK)
    config = _config(client, _open(clinic_a, client))
    assert _submit(client, config, fake, "125.00")[1]["state"] == "succeeded"

    response = client.post(reverse("staff:phone-payment-open", kwargs={"statement_id": clinic_a.statement.public_id}))

    assert response.status_code == 302
    assert response["Location"] == reverse("staff:patient-ledger", kwargs={"patient_id": clinic_a.patient.public_id})
    with tenant_scope(clinic_a.tenant):
        assert Checkout.objects.filter(channel=PaymentChannel.PHONE).count() == 1
    assert "nothing left to pay" in client.get(response["Location"]).content.decode()


def test_an_expired_phone_payment_page_sends_staff_back_to_the_ledger(clinic_a: Clinic, fake: FakeProcessor):
    client = clinic_a.client_as(FRONT_DESK)
    page_url = _open(clinic_a, client)
    with tenant_scope(clinic_a.tenant):
        Checkout.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    response = client.get(page_url)
    assert response.status_code == 302
    assert response["Location"] == reverse("staff:patient-ledger", kwargs={"patient_id": clinic_a.patient.public_id})


def test_an_expired_phone_payment_charges_nothing_and_says_so(clinic_a: Clinic, fake: FakeProcessor):
    client = clinic_a.client_as(FRONT_DESK)
    config = _config(client, _open(clinic_a, client))
    with tenant_scope(clinic_a.tenant):
        Checkout.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    status, body = _submit(client, config, fake, "40.00")
    assert status == 400 and body["message"] == PHONE_CHECKOUT_EXPIRED_MESSAGE
    assert fake.calls_named("create_payment") == []


def test_another_clinics_phone_checkout_is_404(clinic_a: Clinic, clinic_b: Clinic, fake: FakeProcessor):
    with tenant_scope(clinic_b.tenant):
        theirs = phone_checkout_open(
            tenant=clinic_b.tenant,
            statement=clinic_b.statement,
            actor=clinic_b.user(FRONT_DESK),
            actor_role=FRONT_DESK,
        )
    client = clinic_a.client_as(FRONT_DESK)
    kwargs = {"phone_checkout_id": theirs.public_id}
    assert client.get(reverse("staff:phone-payment", kwargs=kwargs)).status_code == 404
    submit = client.post(
        reverse("staff:phone-payment-submit", kwargs=kwargs), {"amount": "1.00", "setup_intent_id": "x"}
    )
    assert submit.status_code == 404
    assert client.post(reverse("staff:phone-payment-renew", kwargs=kwargs)).status_code == 404


def test_a_patients_checkout_is_not_usable_on_staff_endpoints(clinic_a: Clinic, fake: FakeProcessor):
    patient = clinic_a.client()
    response = patient.post(
        "/",
        {"statement_number": clinic_a.statement.number, "date_of_birth": clinic_a.patient.date_of_birth.isoformat()},
    )
    config = _config(patient, response["Location"])
    fake.complete_setup(config["setupIntentId"])
    with tenant_scope(clinic_a.tenant):
        checkout = Checkout.objects.get()
    staff = clinic_a.client_as(FRONT_DESK)
    kwargs = {"phone_checkout_id": checkout.public_id}
    assert staff.get(reverse("staff:phone-payment", kwargs=kwargs)).status_code == 404
    data = {"amount": "40.00", "setup_intent_id": config["setupIntentId"]}
    assert staff.post(reverse("staff:phone-payment-submit", kwargs=kwargs), data).status_code == 404
    assert fake.calls_named("create_payment") == []


def test_a_phone_checkout_is_not_usable_on_patient_endpoints(clinic_a: Clinic, fake: FakeProcessor):
    staff = clinic_a.client_as(FRONT_DESK)
    config = _config(staff, _open(clinic_a, staff))
    fake.complete_setup(config["setupIntentId"])
    with tenant_scope(clinic_a.tenant):
        checkout = Checkout.objects.get()
    # Even a session that (somehow) names the phone checkout cannot use the patient pages with it.
    patient = clinic_a.client()
    session = patient.session
    session[SESSION_CHECKOUTS] = [str(checkout.public_id)]
    session.save()
    kwargs = {"checkout_id": checkout.public_id}
    assert patient.get(reverse("billing:pay", kwargs=kwargs)).status_code == 404
    data = {"amount": "40.00", "setup_intent_id": config["setupIntentId"]}
    assert patient.post(reverse("billing:pay-submit", kwargs=kwargs), data).status_code == 404
    assert fake.calls_named("create_payment") == []


def test_the_ledger_offers_a_phone_payment_per_open_statement(clinic_a: Clinic, fake: FakeProcessor):
    url = reverse("staff:patient-ledger", kwargs={"patient_id": clinic_a.patient.public_id})
    action = reverse("staff:phone-payment-open", kwargs={"statement_id": clinic_a.statement.public_id})
    html = clinic_a.client_as(FRONT_DESK).get(url).content.decode()
    assert f'action="{action}"' in html and "Take a phone payment" in html


def test_the_staff_receipt_pdf_is_the_patients_receipt_and_is_audited(clinic_a: Clinic, fake: FakeProcessor):
    client = clinic_a.client_as(FRONT_DESK)
    _, body = _submit(client, _config(client, _open(clinic_a, client)), fake, "40.00")
    with tenant_scope(clinic_a.tenant):
        payment = Payment.objects.get()

    response = client.get(reverse("staff:payment-receipt-pdf", kwargs={"payment_id": payment.public_id}))

    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF") and response["Cache-Control"] == "no-store"
    (viewed,) = _events(clinic_a, "receipt.viewed")
    assert viewed.actor_role == FRONT_DESK and viewed.target_id == str(payment.public_id)


def test_an_unfinished_payment_has_no_receipt(clinic_a: Clinic, fake: FakeProcessor):
    client = clinic_a.client_as(FRONT_DESK)
    fake.create_outcome = "processing"
    _, body = _submit(client, _config(client, _open(clinic_a, client)), fake, "40.00")
    assert body["state"] == "pending"
    with tenant_scope(clinic_a.tenant):
        payment = Payment.objects.get()
    response = client.get(reverse("staff:payment-receipt-pdf", kwargs={"payment_id": payment.public_id}))
    assert response.status_code == 302
    assert response["Location"] == reverse("staff:payment", kwargs={"payment_id": payment.public_id})


def test_the_phone_payment_page_has_the_payment_pages_csp_and_only_inventoried_scripts(
    clinic_a: Clinic, fake: FakeProcessor, settings: Any
):
    client = clinic_a.client_as(FRONT_DESK)
    response = client.get(_open(clinic_a, client))
    policy = response["Content-Security-Policy"]
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    script_src = set(directives["script-src"])
    stripe_origin = re.match(r"^https?://[^/]+", settings.STRIPE_JS_URL).group()  # type: ignore[union-attr]
    assert {s for s in script_src if not s.startswith("'nonce-")} == {"'self'", stripe_origin}
    assert "'unsafe-inline'" not in policy and directives["frame-ancestors"] == ["'none'"]
    html = response.content.decode()
    # docs/payment-page-scripts.md: Stripe.js, checkout.js and the config data block, nothing else.
    assert set(re.findall(r"<script\b[^>]*\bsrc=\"([^\"]+)\"", html)) == {
        settings.STRIPE_JS_URL,
        static("billing/checkout.js"),
    }
    assert re.findall(r"<script\b(?![^>]*\bsrc=)([^>]*)>", html) == [' id="checkout-config" type="application/json"']
    assert response["Cache-Control"] == "no-store"
