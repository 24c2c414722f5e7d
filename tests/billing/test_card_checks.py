"""CVC and postal-code check results are stored; the clinic's policy decides."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billing.models import CardCheckPolicy, CheckResult, EntryKind, LedgerEntry, Payment, PaymentStatus
from billing.services.ledger import statement_payable
from billing.services.payment_states import can_transition
from billing.services.sweep import payments_settle_stuck_for_tenant
from portal.tenancy.context import tenant_scope
from tests.billing.conftest import open_checkout

pytestmark = pytest.mark.django_db


def _pay(bill, fake_processor, *, cvc="pass", postal="pass"):
    fake_processor.cvc_check, fake_processor.postal_check = cvc, postal
    checkout = open_checkout(bill)
    fake_processor.complete_setup(checkout.config["setupIntentId"])
    _, body = checkout.submit("125.00")
    with tenant_scope(bill.tenant):
        return body, Payment.objects.get()


def test_check_results_are_recorded(make_bill, fake_processor):
    bill = make_bill(policy=CardCheckPolicy.ACCEPT)
    _, payment = _pay(bill, fake_processor, cvc="pass", postal="unavailable")
    assert payment.cvc_check == CheckResult.PASS and payment.postal_check == CheckResult.UNAVAILABLE


def test_accept_policy_takes_a_payment_with_failed_checks_without_flag(make_bill, fake_processor):
    bill = make_bill(policy=CardCheckPolicy.ACCEPT)
    body, payment = _pay(bill, fake_processor, cvc="fail")
    assert body["state"] == "succeeded" and not payment.flagged
    assert fake_processor.calls_named("create_payment")[0]["capture_method"] == "automatic"


def test_flag_policy_takes_the_payment_and_flags_it(make_bill, fake_processor):
    bill = make_bill(policy=CardCheckPolicy.FLAG)
    body, payment = _pay(bill, fake_processor, postal="fail")
    assert body["state"] == "succeeded"
    assert payment.flagged and payment.flag_reason == "postal_check_failed"


def test_refuse_policy_releases_the_authorisation(make_bill, fake_processor):
    bill = make_bill(policy=CardCheckPolicy.REFUSE)
    body, payment = _pay(bill, fake_processor, cvc="fail")
    assert fake_processor.calls_named("create_payment")[0]["capture_method"] == "manual"
    assert body["state"] == "failed" and "security code or postal code" in body["message"]
    assert payment.status == PaymentStatus.CANCELED
    assert [name for name, _ in fake_processor.calls if name in ("capture_payment", "cancel_payment")] == [
        "cancel_payment"
    ]
    with tenant_scope(bill.tenant):
        assert not LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).exists()


def test_refuse_policy_captures_when_checks_pass(make_bill, fake_processor):
    bill = make_bill(policy=CardCheckPolicy.REFUSE)
    body, payment = _pay(bill, fake_processor)
    assert body["state"] == "succeeded" and payment.status == PaymentStatus.SUCCEEDED
    assert len(fake_processor.calls_named("capture_payment")) == 1


def test_sweep_settles_a_payment_whose_webhook_never_came(make_bill, fake_processor):
    bill = make_bill()
    fake_processor.create_outcome = "processing"
    body, payment = _pay(bill, fake_processor)
    assert payment.status == PaymentStatus.PROCESSING
    fake_processor.set_intent_status(payment.processor_payment_intent_id, "succeeded")

    assert payments_settle_stuck_for_tenant(tenant=bill.tenant, older_than=timedelta(minutes=10)) == 0
    assert payments_settle_stuck_for_tenant(tenant=bill.tenant, older_than=timedelta(seconds=-1)) == 1

    with tenant_scope(bill.tenant):
        payment.refresh_from_db()
        assert payment.status == PaymentStatus.SUCCEEDED
        assert LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).count() == 1


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        ("created", "succeeded", True),
        ("processing", "succeeded", True),
        ("requires_action", "requires_payment_method", True),
        ("requires_capture", "succeeded", True),
        ("succeeded", "requires_payment_method", False),
        ("succeeded", "processing", False),
        ("canceled", "succeeded", False),
        ("processing", "created", False),
        ("processing", "requires_action", False),
    ],
)
def test_transition_table(current, new, allowed):
    assert can_transition(current, new) is allowed


def test_sweep_cancels_an_attempt_abandoned_at_three_d_secure(make_bill, fake_processor):
    bill = make_bill()
    fake_processor.create_outcome = "requires_action"
    body, payment = _pay(bill, fake_processor)
    assert payment.status == PaymentStatus.REQUIRES_ACTION
    with tenant_scope(bill.tenant):
        # While the bank waits for the patient, nothing is held back: paying
        # again cancels this attempt first (tests/billing/test_abandoned_payments.py).
        assert statement_payable(statement=bill.statement).minor_units == 12_500

    # Still waiting, but not yet abandoned: retrieved and left alone.
    payments_settle_stuck_for_tenant(tenant=bill.tenant, older_than=timedelta(seconds=-1))
    assert fake_processor.calls_named("cancel_payment") == []

    payments_settle_stuck_for_tenant(
        tenant=bill.tenant, older_than=timedelta(seconds=-1), abandoned_after=timedelta(seconds=-1)
    )

    (cancel,) = fake_processor.calls_named("cancel_payment")
    assert cancel["idempotency_key"].endswith("-1-abandon")
    with tenant_scope(bill.tenant):
        payment.refresh_from_db()
        assert payment.status == PaymentStatus.CANCELED
        assert statement_payable(statement=bill.statement).minor_units == 12_500
        assert not LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).exists()


def test_an_attempt_the_processor_never_acknowledged_does_not_hold_the_balance(make_bill, fake_processor):
    bill = make_bill()
    fake_processor.create_outcome = "unavailable"
    body, payment = _pay(bill, fake_processor)
    assert body["state"] == "unavailable" and payment.status == PaymentStatus.CREATED
    with tenant_scope(bill.tenant):
        # The patient was told they were not charged: they may pay in full again.
        assert statement_payable(statement=bill.statement).minor_units == 12_500
