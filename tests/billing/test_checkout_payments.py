"""Paying a statement through the checkout endpoints, with a scripted processor."""

from __future__ import annotations

import pytest

from billing.models import EntryKind, LedgerEntry, Payment, PaymentStatus
from billing.services.ledger import statement_balance
from portal.tenancy.context import tenant_scope
from tests.billing.conftest import open_checkout

pytestmark = pytest.mark.django_db


def test_full_payment_credits_ledger_once_and_shows_receipt(make_bill, fake_processor):
    bill = make_bill()
    checkout = open_checkout(bill)
    fake_processor.complete_setup(checkout.config["setupIntentId"])

    status, body = checkout.submit("125.00")

    assert status == 200 and body["state"] == "succeeded"
    with tenant_scope(bill.tenant):
        payment = Payment.objects.get()
        assert payment.status == PaymentStatus.SUCCEEDED
        assert payment.card_last4 == "4242" and payment.receipt_number.startswith("R-")
        credits = LedgerEntry.objects.filter(kind=EntryKind.PAYMENT)
        assert [c.amount_minor for c in credits] == [-12_500]
        assert statement_balance(statement=bill.statement).minor_units == 0
    receipt = checkout.client.get(body["resultUrl"])
    assert receipt.status_code == 200
    assert payment.receipt_number in receipt.content.decode()
    pdf = checkout.client.get(body["resultUrl"] + "receipt.pdf")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")


def test_amount_and_currency_come_from_the_server(make_bill, fake_processor):
    bill = make_bill()
    checkout = open_checkout(bill)
    fake_processor.complete_setup(checkout.config["setupIntentId"])

    # Tampered extras in the POST are ignored: currency, statement, amount_minor.
    status, body = checkout.submit("40.00", currency="JPY", statement="other", amount_minor="1")

    assert status == 200 and body["state"] == "succeeded"
    (create,) = fake_processor.calls_named("create_payment")
    assert create["amount"] == 4_000 and create["currency"] == "USD"
    # Opaque ids only: no name, date of birth, statement number or summary.
    assert set(create["metadata"]) == {"settle_tenant", "settle_checkout", "settle_payment"}
    flat = " ".join(create["metadata"].values())
    assert "Robin" not in flat and bill.statement.number not in flat
    assert create["idempotency_key"].endswith("-1-create")


@pytest.mark.parametrize(
    ("amount", "message_part"),
    [
        ("0", "greater than zero"),
        ("-5", "amount such as"),
        ("abc", "amount such as"),
        ("12.345", "at most 2 decimal places"),
        ("125.01", "most you can pay"),
        ("0.50", "smallest payment"),
        ("1e3", "amount such as"),
        ("", "Enter the amount"),
    ],
)
def test_bad_amounts_are_refused_and_nothing_is_charged(make_bill, fake_processor, amount, message_part):
    bill = make_bill()
    checkout = open_checkout(bill)
    fake_processor.complete_setup(checkout.config["setupIntentId"])

    status, body = checkout.submit(amount)

    assert status == 400
    assert body["state"] == "invalid" and message_part in body["message"]
    assert fake_processor.calls_named("create_payment") == []
    with tenant_scope(bill.tenant):
        assert not Payment.objects.exists()
        assert statement_balance(statement=bill.statement).minor_units == 12_500


def test_minimum_does_not_block_paying_a_small_remaining_balance(make_bill, fake_processor):
    bill = make_bill(amount_minor=60, minimum_payment_minor=500)
    checkout = open_checkout(bill)
    fake_processor.complete_setup(checkout.config["setupIntentId"])

    status, body = checkout.submit("0.60")

    assert status == 200 and body["state"] == "succeeded"


def test_partial_payment_leaves_the_rest_payable(make_bill, fake_processor):
    bill = make_bill()
    checkout = open_checkout(bill)
    fake_processor.complete_setup(checkout.config["setupIntentId"])

    status, body = checkout.submit("25.50")

    assert body["state"] == "succeeded"
    with tenant_scope(bill.tenant):
        assert statement_balance(statement=bill.statement).minor_units == 12_500 - 2_550
    page = checkout.client.get(checkout.pay_url)
    assert "$99.50" in page.content.decode()


def test_decline_is_plain_language_and_a_retry_gets_a_fresh_card_form(make_bill, fake_processor):
    bill = make_bill()
    checkout = open_checkout(bill)
    fake_processor.complete_setup(checkout.config["setupIntentId"])
    fake_processor.create_outcome = "decline"

    status, body = checkout.submit("125.00")

    assert status == 200 and body["state"] == "failed"
    assert "declined for insufficient funds" in body["message"] and "not been charged" in body["message"]
    assert body["setupIntentId"] != checkout.config["setupIntentId"]
    with tenant_scope(bill.tenant):
        failed = Payment.objects.get()
        assert failed.status == PaymentStatus.REQUIRES_PAYMENT_METHOD
        assert not LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).exists()

    fake_processor.create_outcome = "succeed"
    fake_processor.complete_setup(body["setupIntentId"])
    status, retry = checkout.submit("125.00", setup_intent_id=body["setupIntentId"])
    assert retry["state"] == "succeeded"
    with tenant_scope(bill.tenant):
        assert Payment.objects.filter(status=PaymentStatus.SUCCEEDED).count() == 1
        assert statement_balance(statement=bill.statement).minor_units == 0


def test_resubmitting_the_same_card_form_does_not_charge_twice(make_bill, fake_processor):
    bill = make_bill()
    checkout = open_checkout(bill)
    fake_processor.complete_setup(checkout.config["setupIntentId"])

    first = checkout.submit("125.00")
    second = checkout.submit("125.00")

    assert first[1]["state"] == second[1]["state"] == "succeeded"
    assert len(fake_processor.calls_named("create_payment")) == 1
    with tenant_scope(bill.tenant):
        assert LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).count() == 1


def test_processor_unavailable_records_the_attempt_and_retry_resends_same_key(make_bill, fake_processor):
    bill = make_bill()
    checkout = open_checkout(bill)
    fake_processor.complete_setup(checkout.config["setupIntentId"])
    fake_processor.create_outcome = "unavailable"

    status, body = checkout.submit("125.00")

    assert status == 503 and body["state"] == "unavailable"
    assert "unavailable" in body["message"] and "not been charged" in body["message"]
    with tenant_scope(bill.tenant):
        attempt = Payment.objects.get()
        assert attempt.status == PaymentStatus.CREATED and attempt.processor_unreachable_at is not None

    fake_processor.create_outcome = "succeed"
    status, body = checkout.submit("125.00")
    assert body["state"] == "succeeded"
    first, second = fake_processor.calls_named("create_payment")
    assert first == second  # same idempotency key and same parameters
    with tenant_scope(bill.tenant):
        assert Payment.objects.count() == 1


def test_processor_unavailable_when_preparing_the_card_form(make_bill, fake_processor):
    bill = make_bill()
    fake_processor.setup_unavailable = True
    client = bill.client()
    response = client.post("/", {"statement_number": bill.statement.number, "date_of_birth": "1984-02-29"})
    page = client.get(response["Location"])
    assert page.status_code == 503
    assert "not been charged" in page.content.decode()


def test_three_d_secure_is_finished_from_the_processor_state(make_bill, fake_processor):
    bill = make_bill()
    checkout = open_checkout(bill)
    fake_processor.complete_setup(checkout.config["setupIntentId"])
    fake_processor.create_outcome = "requires_action"

    status, body = checkout.submit("125.00")

    assert body["state"] == "requires_action" and body["clientSecret"]
    with tenant_scope(bill.tenant):
        payment = Payment.objects.get()
        assert payment.status == PaymentStatus.REQUIRES_ACTION
        assert not LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).exists()
    # The browser completes authentication with confirmCardPayment, then asks us to refresh.
    fake_processor.set_intent_status(payment.processor_payment_intent_id, "succeeded")
    refreshed = checkout.client.post(body["refreshUrl"]).json()
    assert refreshed["state"] == "succeeded"
    with tenant_scope(bill.tenant):
        assert LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).count() == 1


def test_failed_authentication_charges_nothing(make_bill, fake_processor):
    bill = make_bill()
    checkout = open_checkout(bill)
    fake_processor.complete_setup(checkout.config["setupIntentId"])
    fake_processor.create_outcome = "requires_action"
    _, body = checkout.submit("125.00")
    with tenant_scope(bill.tenant):
        intent_id = Payment.objects.get().processor_payment_intent_id
    fake_processor.set_intent_status(
        intent_id, "requires_payment_method", failure_code="payment_intent_authentication_failure"
    )

    refreshed = checkout.client.post(body["refreshUrl"]).json()

    assert refreshed["state"] == "failed" and "3-D Secure" in refreshed["message"]
    with tenant_scope(bill.tenant):
        assert statement_balance(statement=bill.statement).minor_units == 12_500


def test_checkout_belongs_to_the_session_that_opened_it(make_bill, fake_processor):
    bill = make_bill()
    checkout = open_checkout(bill)
    stranger = bill.client()
    assert stranger.get(checkout.pay_url).status_code == 404
    assert stranger.post(checkout.config["submitUrl"], {"amount": "1", "setup_intent_id": "x"}).status_code == 404


def test_checkout_ids_are_404_on_another_clinics_host(make_bill, fake_processor):
    bill = make_bill("alpha")
    make_bill("beta", number="ST-2001")
    checkout = open_checkout(bill)
    # Same browser session, other clinic's host: the checkout does not exist there.
    checkout.client.defaults["HTTP_HOST"] = "beta.localhost"
    assert checkout.client.get(checkout.pay_url).status_code == 404
