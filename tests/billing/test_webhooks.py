"""The per-clinic Stripe webhook: signatures, once-only effects, current state."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import Client

from billing.models import EntryKind, LedgerEntry, Payment, PaymentStatus, ProcessorEvent
from portal.tenancy.context import tenant_scope
from tests.billing.conftest import open_checkout
from tests.billing.webhook_events import intent_object, signed_event

pytestmark = pytest.mark.django_db


def _platform() -> Client:
    return Client(HTTP_HOST="localhost")


def _url(bill) -> str:
    return f"/webhooks/stripe/{bill.tenant.public_id}/"


def _processing_payment(bill, fake_processor) -> Payment:
    """A payment the processor accepted but has not finished (no credit yet)."""
    checkout = open_checkout(bill)
    fake_processor.complete_setup(checkout.config["setupIntentId"])
    fake_processor.create_outcome = "processing"
    _, body = checkout.submit("125.00")
    assert body["state"] == "pending"
    with tenant_scope(bill.tenant):
        return Payment.objects.get()


def _post(bill, payload: bytes, signature: str | None):
    headers: dict[str, Any] = {"HTTP_STRIPE_SIGNATURE": signature} if signature is not None else {}
    return _platform().post(_url(bill), data=payload, content_type="application/json", **headers)


def _deliver(bill, payment, *, event_id: str, event_type: str = "payment_intent.succeeded", status="succeeded"):
    payload, signature = signed_event(
        secret=bill.webhook_secret,
        event_id=event_id,
        event_type=event_type,
        obj=intent_object(
            payment.processor_payment_intent_id,
            status=status,
            amount=payment.amount_minor,
            metadata={"settle_payment": str(payment.public_id), "settle_tenant": str(bill.tenant.public_id)},
        ),
    )
    return _post(bill, payload, signature)


def test_succeeded_event_credits_the_ledger(make_bill, fake_processor):
    bill = make_bill()
    payment = _processing_payment(bill, fake_processor)
    fake_processor.set_intent_status(payment.processor_payment_intent_id, "succeeded")

    response = _deliver(bill, payment, event_id="evt_1")

    assert response.status_code == 200 and response.json() == {"outcome": "applied"}
    with tenant_scope(bill.tenant):
        payment.refresh_from_db()
        assert payment.status == PaymentStatus.SUCCEEDED
        assert LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).count() == 1


def test_same_event_three_times_has_one_effect(make_bill, fake_processor):
    bill = make_bill()
    payment = _processing_payment(bill, fake_processor)
    fake_processor.set_intent_status(payment.processor_payment_intent_id, "succeeded")

    outcomes = [_deliver(bill, payment, event_id="evt_same").json()["outcome"] for _ in range(3)]

    assert outcomes == ["applied", "duplicate", "duplicate"]
    with tenant_scope(bill.tenant):
        assert ProcessorEvent.objects.filter(event_id="evt_same").count() == 1
        assert LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).count() == 1


def test_state_comes_from_the_current_intent_not_the_event(make_bill, fake_processor):
    bill = make_bill()
    payment = _processing_payment(bill, fake_processor)
    # The processor now says succeeded; a stale "failed" event arrives late.
    fake_processor.set_intent_status(payment.processor_payment_intent_id, "succeeded")

    _deliver(
        bill,
        payment,
        event_id="evt_late_fail",
        event_type="payment_intent.payment_failed",
        status="requires_payment_method",
    )

    with tenant_scope(bill.tenant):
        payment.refresh_from_db()
        assert payment.status == PaymentStatus.SUCCEEDED
        assert LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).count() == 1


def test_event_after_success_cannot_move_it_back(make_bill, fake_processor):
    bill = make_bill()
    payment = _processing_payment(bill, fake_processor)
    fake_processor.set_intent_status(payment.processor_payment_intent_id, "succeeded")
    _deliver(bill, payment, event_id="evt_ok")
    # Even if the processor object were to regress, succeeded is terminal.
    fake_processor.set_intent_status(payment.processor_payment_intent_id, "processing")

    _deliver(bill, payment, event_id="evt_regress", event_type="payment_intent.processing", status="processing")

    with tenant_scope(bill.tenant):
        payment.refresh_from_db()
        assert payment.status == PaymentStatus.SUCCEEDED


@pytest.mark.parametrize(
    "case",
    ["unsigned", "bad_signature", "stale", "malformed", "wrong_secret"],
)
def test_bad_deliveries_are_rejected_and_change_nothing(make_bill, fake_processor, case):
    bill = make_bill()
    payment = _processing_payment(bill, fake_processor)
    fake_processor.set_intent_status(payment.processor_payment_intent_id, "succeeded")
    obj = intent_object(
        payment.processor_payment_intent_id,
        status="succeeded",
        amount=payment.amount_minor,
        metadata={"settle_payment": str(payment.public_id)},
    )
    payload, signature = signed_event(secret=bill.webhook_secret, event_id="evt_bad", event_type="x", obj=obj)
    if case == "unsigned":
        signature = None
    elif case == "bad_signature":
        signature = signature[:-4] + "0000"
    elif case == "stale":
        payload, signature = signed_event(
            secret=bill.webhook_secret, event_id="evt_bad", event_type="x", obj=obj, timestamp=int(time.time()) - 301
        )
    elif case == "malformed":
        payload = b"{not json"
        payload, signature = payload, signed_event(secret=bill.webhook_secret, event_id="e", event_type="x", obj={})[1]
    elif case == "wrong_secret":
        payload, signature = signed_event(secret="whsec_other", event_id="evt_bad", event_type="x", obj=obj)

    response = _post(bill, payload, signature)

    assert response.status_code == 400
    with tenant_scope(bill.tenant):
        payment.refresh_from_db()
        assert payment.status == PaymentStatus.PROCESSING
        assert not ProcessorEvent.objects.exists()


def test_events_for_other_accounts_are_acknowledged_and_ignored(make_bill, fake_processor):
    bill = make_bill()
    payload, signature = signed_event(
        secret=bill.webhook_secret,
        event_id="evt_foreign",
        event_type="payment_intent.succeeded",
        obj=intent_object("pi_unknown", status="succeeded", amount=100, metadata={"settle_tenant": "someone-else"}),
    )

    response = _post(bill, payload, signature)

    assert response.status_code == 200 and response.json() == {"outcome": "ignored"}


def test_intent_found_by_metadata_when_its_id_was_never_recorded(make_bill, fake_processor):
    bill = make_bill()
    checkout = open_checkout(bill)
    fake_processor.complete_setup(checkout.config["setupIntentId"])
    fake_processor.create_outcome = "unavailable"
    checkout.submit("125.00")  # the create call's answer was lost
    with tenant_scope(bill.tenant):
        payment = Payment.objects.get()
    assert payment.processor_payment_intent_id is None
    # ...but the processor did create it, and tells us by webhook.
    fake_processor.create_outcome = "succeed"
    intent = fake_processor.create_payment(
        amount=payment.amount_minor,
        currency="USD",
        payment_method_id="pm_x",
        capture_method="automatic",
        metadata={"settle_payment": str(payment.public_id), "settle_tenant": str(bill.tenant.public_id)},
        idempotency_key="k",
    )
    payload, signature = signed_event(
        secret=bill.webhook_secret,
        event_id="evt_lost",
        event_type="payment_intent.succeeded",
        obj=intent_object(intent.id, status="succeeded", amount=payment.amount_minor, metadata=dict(intent.metadata)),
    )

    assert _post(bill, payload, signature).json() == {"outcome": "applied"}
    with tenant_scope(bill.tenant):
        payment.refresh_from_db()
        assert payment.status == PaymentStatus.SUCCEEDED and payment.processor_payment_intent_id == intent.id


def test_processor_unreachable_during_webhook_asks_for_redelivery(make_bill, fake_processor):
    bill = make_bill()
    payment = _processing_payment(bill, fake_processor)
    fake_processor.retrieve_unavailable = True

    response = _deliver(bill, payment, event_id="evt_retry")

    assert response.status_code == 503
    with tenant_scope(bill.tenant):
        assert not ProcessorEvent.objects.filter(event_id="evt_retry").exists()
    fake_processor.retrieve_unavailable = False
    fake_processor.set_intent_status(payment.processor_payment_intent_id, "succeeded")
    assert _deliver(bill, payment, event_id="evt_retry").json() == {"outcome": "applied"}


def test_webhook_of_unknown_tenant_is_404_and_tenant_host_is_not_the_endpoint(make_bill, fake_processor):
    bill = make_bill()
    assert (
        _platform()
        .post("/webhooks/stripe/00000000-0000-0000-0000-000000000000/", data=b"{}", content_type="application/json")
        .status_code
        == 404
    )
    tenant_host = Client(HTTP_HOST="alpha.localhost")
    assert tenant_host.post(_url(bill), data=b"{}", content_type="application/json").status_code == 404
