"""The Stripe adapter against localstripe: the real library, the real wire."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from billing.models import EntryKind, LedgerEntry, Payment, PaymentStatus, ProcessorEvent
from billing.processor import CardDeclined
from billing.processor.stripe_processor import StripeProcessor
from portal.tenancy.context import tenant_scope
from tests.billing.conftest import open_checkout
from tests.conftest import free_port

pytestmark = pytest.mark.localstripe


@pytest.fixture
def stripe_api(localstripe) -> str:
    """localstripe, emptied, with the portal pointed at it (tests/conftest.py)."""
    return str(localstripe.base_url)


def browser_confirm_setup(base: str, client_secret: str, card_number: str) -> dict:  # type: ignore[type-arg]
    """What Stripe.js's confirmCardSetup sends from the patient's browser."""
    setup_id = client_secret.split("_secret_")[0]
    body = {
        "key": "pk_test_x",
        "use_stripe_sdk": True,
        "client_secret": client_secret,
        "payment_method_data": {
            "type": "card",
            "card": {"number": card_number, "exp_month": "12", "exp_year": "2031", "cvc": "123"},
            "billing_details": {"address": {"postal_code": "12345"}},
        },
    }
    request = urllib.request.Request(
        f"{base}/v1/setup_intents/{setup_id}/confirm", data=json.dumps(body).encode(), method="POST"
    )
    try:
        return json.load(urllib.request.urlopen(request))  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        return json.load(exc)  # type: ignore[no-any-return]


def _processor() -> StripeProcessor:
    return StripeProcessor(secret_key="sk_test_localstripe", publishable_key="pk_test_localstripe")


def test_setup_then_server_side_confirm_succeeds(stripe_api):
    processor = _processor()
    setup = processor.create_setup_intent(metadata={"settle_checkout": "c1"}, idempotency_key="k-setup")
    browser_confirm_setup(stripe_api, setup.client_secret, "4242424242424242")
    confirmed = processor.retrieve_setup_intent(setup.id)
    assert confirmed.status == "succeeded" and confirmed.payment_method_id
    assert confirmed.metadata == {"settle_checkout": "c1"}

    intent = processor.create_payment(
        amount=4_200,
        currency="USD",
        payment_method_id=confirmed.payment_method_id,
        capture_method="automatic",
        metadata={"settle_payment": "p1"},
        idempotency_key="k-create",
    )

    assert intent.status == "succeeded" and intent.amount == 4_200 and intent.currency == "USD"
    assert intent.card_last4 == "4242" and intent.card_brand == "visa"
    assert processor.retrieve_payment(intent.id).status == "succeeded"


def test_charge_decline_raises_card_declined(stripe_api):
    processor = _processor()
    setup = processor.create_setup_intent(metadata={}, idempotency_key="k")
    browser_confirm_setup(stripe_api, setup.client_secret, "4000000000000341")
    method = processor.retrieve_setup_intent(setup.id).payment_method_id
    assert method
    with pytest.raises(CardDeclined) as declined:
        processor.create_payment(
            amount=1_000,
            currency="USD",
            payment_method_id=method,
            capture_method="automatic",
            metadata={},
            idempotency_key="k2",
        )
    assert declined.value.code == "card_declined"


def test_three_d_secure_card_requires_action_then_manual_capture(stripe_api):
    processor = _processor()
    setup = processor.create_setup_intent(metadata={}, idempotency_key="k")
    browser_confirm_setup(stripe_api, setup.client_secret, "4000002500003155")
    # localstripe asks for authentication during setup too; confirm it as Stripe.js would.
    request = urllib.request.Request(
        f"{stripe_api}/v1/setup_intents/{setup.id}/confirm",
        data=json.dumps({"key": "pk_test_x", "client_secret": setup.client_secret}).encode(),
        method="POST",
    )
    urllib.request.urlopen(request).read()
    method = processor.retrieve_setup_intent(setup.id).payment_method_id
    assert method

    intent = processor.create_payment(
        amount=2_000,
        currency="USD",
        payment_method_id=method,
        capture_method="manual",
        metadata={},
        idempotency_key="k3",
    )
    assert intent.status == "requires_action" and intent.client_secret

    authenticate = urllib.request.Request(
        f"{stripe_api}/v1/payment_intents/{intent.id}/_authenticate?success=true",
        data=json.dumps({"key": "pk_test_x", "client_secret": intent.client_secret}).encode(),
        method="POST",
    )
    urllib.request.urlopen(authenticate).read()
    assert processor.retrieve_payment(intent.id).status == "requires_capture"
    assert processor.capture_payment(intent.id, idempotency_key="k4").status == "succeeded"


def test_unreachable_processor_is_reported_as_unavailable(settings):
    from billing.processor import ProcessorUnavailable

    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"
    settings.STRIPE_TIMEOUT_SECONDS = 2
    with pytest.raises(ProcessorUnavailable):
        _processor().create_setup_intent(metadata={}, idempotency_key="k")


@pytest.mark.django_db(transaction=True)
def test_checkout_and_localstripe_webhook_end_to_end(stripe_api, make_bill, live_server):
    """A real payment through our endpoints; localstripe then delivers its
    signed payment_intent.succeeded event to the clinic's webhook URL."""
    bill = make_bill()
    webhook_url = f"{live_server.url.replace('localhost', '127.0.0.1')}/webhooks/stripe/{bill.tenant.public_id}/"
    register = urllib.request.Request(
        f"{stripe_api}/_config/webhooks/alpha",
        data=json.dumps({"url": webhook_url, "secret": bill.webhook_secret}).encode(),
        method="POST",
    )
    urllib.request.urlopen(register).read()
    checkout = open_checkout(bill)
    browser_confirm_setup(stripe_api, checkout.config["clientSecret"], "4242424242424242")

    status, body = checkout.submit("125.00")

    assert status == 200 and body["state"] == "succeeded"
    with tenant_scope(bill.tenant):
        payment = Payment.objects.get()
    assert payment.status == PaymentStatus.SUCCEEDED
    # localstripe delivers every event to every registered webhook about a
    # second later; wait for the one about this payment (events of earlier
    # tests' intents are acknowledged and ignored).
    deadline = time.monotonic() + 15
    events: list[ProcessorEvent] = []
    while time.monotonic() < deadline and not events:
        with tenant_scope(bill.tenant):
            events = list(ProcessorEvent.objects.filter(event_type="payment_intent.succeeded", payment=payment))
        time.sleep(0.2)
    assert events, "localstripe's webhook never arrived"
    with tenant_scope(bill.tenant):
        assert events[0].outcome == "applied"
        assert LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).count() == 1


def test_a_partial_refund_through_the_real_library(stripe_api):
    processor = _processor()
    setup = processor.create_setup_intent(metadata={}, idempotency_key="k-refund-setup")
    browser_confirm_setup(stripe_api, setup.client_secret, "4242424242424242")
    method = processor.retrieve_setup_intent(setup.id).payment_method_id
    assert method
    intent = processor.create_payment(
        amount=5_000,
        currency="USD",
        payment_method_id=method,
        capture_method="automatic",
        metadata={},
        idempotency_key="k-refund-pay",
    )
    refund = processor.create_refund(
        payment_intent_id=intent.id, amount=1_250, metadata={"settle_refund": "r1"}, idempotency_key="k-refund-1"
    )
    assert (refund.status, refund.amount, refund.currency) == ("succeeded", 1_250, "USD")
    assert refund.payment_intent_id == intent.id and refund.metadata == {"settle_refund": "r1"}
    assert processor.retrieve_refund(refund.id).id == refund.id
