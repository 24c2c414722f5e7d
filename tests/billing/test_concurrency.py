"""Two submissions of one checkout at the same moment charge once."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from billing.models import EntryKind, LedgerEntry, Payment
from portal.tenancy.context import tenant_scope
from tests.billing.conftest import open_checkout

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_concurrent_double_submit_makes_one_charge_and_one_credit(make_bill, fake_processor):
    bill = make_bill()
    checkout = open_checkout(bill)
    fake_processor.complete_setup(checkout.config["setupIntentId"])
    # Hold the processor call open so the second submission arrives mid-flight.
    fake_processor.create_delay = 0.5
    barrier = threading.Barrier(2)
    results: list[str] = []
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            barrier.wait(timeout=5)
            _, body = checkout.submit("125.00")
            results.append(body["state"])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors, errors
    assert len(results) == 2 and "succeeded" in results
    assert set(results) <= {"succeeded", "pending"}
    assert len(fake_processor.calls_named("create_payment")) == 1
    with tenant_scope(bill.tenant):
        assert Payment.objects.count() == 1
        assert LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).count() == 1


def test_concurrent_webhook_and_checkout_credit_once(make_bill, fake_processor):
    """The checkout's own answer and the webhook race to settle one payment."""
    from tests.billing.test_webhooks import _deliver, _processing_payment

    bill = make_bill()
    payment = _processing_payment(bill, fake_processor)
    fake_processor.set_intent_status(payment.processor_payment_intent_id, "succeeded")
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def deliver(event_id: str) -> None:
        try:
            barrier.wait(timeout=5)
            _deliver(bill, payment, event_id=event_id)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(f"evt_{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors, errors
    with tenant_scope(bill.tenant):
        assert LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).count() == 1
