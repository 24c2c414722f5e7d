"""A payment left at 3-D Secure holds nothing: the patient pays again at once
(the old intent is canceled first), staff can cancel it, and the page never
says "Nothing to pay" while a balance is due."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from billing.models import EntryKind, LedgerEntry, Payment, PaymentStatus
from billing.processor import ProcessorError, ProcessorUnavailable
from billing.services.checkout import STILL_AWAITING_MESSAGE
from billing.services.ledger import statement_balance, statement_payable
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.billing.conftest import open_checkout

pytestmark = pytest.mark.django_db


def _abandon_at_3ds(bill, fake_processor, amount="125.00"):
    """A patient submits a 3-D Secure card and closes the tab at the bank's prompt."""
    checkout = open_checkout(bill)
    fake_processor.complete_setup(checkout.config["setupIntentId"])
    fake_processor.create_outcome = "requires_action"
    status, body = checkout.submit(amount)
    assert status == 200 and body["state"] == "requires_action"
    with tenant_scope(bill.tenant):
        return checkout, Payment.objects.get()


def _call_names(fake_processor):
    return [name for name, _ in fake_processor.calls]


def test_an_attempt_awaiting_authentication_holds_nothing(make_bill, fake_processor):
    bill = make_bill()
    _abandon_at_3ds(bill, fake_processor)

    # The patient comes back (a new look-up): the full balance is payable at once.
    again = open_checkout(bill)
    page = again.client.get(again.pay_url).content.decode()

    assert "Nothing to pay" not in page
    assert again.config["fullAmount"] == "125.00"
    assert "An earlier payment of $125.00 was not finished" in page
    with tenant_scope(bill.tenant):
        assert statement_payable(statement=bill.statement).minor_units == 12_500
        # Counted only when a new attempt is about to be charged.
        assert statement_payable(statement=bill.statement, include_awaiting_patient=True).minor_units == 0


def test_paying_again_cancels_the_abandoned_intent_first(make_bill, fake_processor):
    bill = make_bill()
    first_checkout, abandoned = _abandon_at_3ds(bill, fake_processor)
    # A double click of the same card form is not paying again: nothing is canceled.
    assert first_checkout.submit("125.00")[1]["state"] == "requires_action"
    assert fake_processor.calls_named("cancel_payment") == []

    again = open_checkout(bill)
    fake_processor.complete_setup(again.config["setupIntentId"])
    fake_processor.create_outcome = "succeed"
    status, body = again.submit("125.00")

    assert status == 200 and body["state"] == "succeeded"
    (cancel,) = fake_processor.calls_named("cancel_payment")
    assert cancel["id"] == abandoned.processor_payment_intent_id
    # The abandoned attempt's own key: a retry of the cancel is the same request.
    assert cancel["idempotency_key"] == f"settle-{abandoned.checkout.public_id}-1-abandon"
    names = _call_names(fake_processor)
    assert names.index("cancel_payment") < len(names) - 1 - names[::-1].index("create_payment"), names
    with tenant_scope(bill.tenant):
        abandoned.refresh_from_db()
        assert abandoned.status == PaymentStatus.CANCELED
        assert abandoned.failure_code == "replaced"
        assert LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).count() == 1
        assert statement_balance(statement=bill.statement).minor_units == 0
        assert AuditEvent.objects.filter(action="payment.canceled", target_id=str(abandoned.public_id)).count() == 1
    # The old tab, if it came back, learns it was canceled and charged nothing.
    refreshed = first_checkout.client.post(
        reverse(
            "billing:payment-refresh",
            kwargs={"checkout_id": abandoned.checkout.public_id, "payment_id": abandoned.public_id},
        )
    ).json()
    assert refreshed["state"] == "failed" and "You have not been charged" in refreshed["message"]


def test_a_cancel_that_fails_keeps_the_old_attempt_holding(make_bill, fake_processor):
    bill = make_bill()
    _, abandoned = _abandon_at_3ds(bill, fake_processor)
    fake_processor.cancel_error = ProcessorUnavailable("timeout")

    again = open_checkout(bill)
    fake_processor.complete_setup(again.config["setupIntentId"])
    fake_processor.create_outcome = "succeed"
    status, body = again.submit("125.00")

    assert status == 400 and body["message"] == STILL_AWAITING_MESSAGE
    assert len(fake_processor.calls_named("cancel_payment")) == 1
    assert len(fake_processor.calls_named("create_payment")) == 1, "the new attempt was never charged"
    with tenant_scope(bill.tenant):
        abandoned.refresh_from_db()
        assert abandoned.status == PaymentStatus.REQUIRES_ACTION
        assert Payment.objects.count() == 1
        assert not LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).exists()

    # Once the processor answers, the same cancel (same key) goes through and the patient pays.
    fake_processor.cancel_error = None
    status, body = again.submit("125.00")
    assert status == 200 and body["state"] == "succeeded"
    first, second = fake_processor.calls_named("cancel_payment")
    assert first["idempotency_key"] == second["idempotency_key"]
    with tenant_scope(bill.tenant):
        assert LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).count() == 1


def test_an_intent_authenticated_meanwhile_is_credited_and_never_charged_twice(make_bill, fake_processor):
    bill = make_bill()
    _, abandoned = _abandon_at_3ds(bill, fake_processor)
    # The patient finished 3-D Secure in the old tab after all: the processor
    # refuses to cancel a succeeded intent.
    fake_processor.set_intent_status(abandoned.processor_payment_intent_id, "succeeded")
    fake_processor.cancel_error = ProcessorError("payment_intent_unexpected_state")

    again = open_checkout(bill)
    fake_processor.complete_setup(again.config["setupIntentId"])
    fake_processor.create_outcome = "succeed"
    status, body = again.submit("125.00")

    assert status == 400 and "nothing left to pay" in body["message"]
    assert len(fake_processor.calls_named("create_payment")) == 1
    with tenant_scope(bill.tenant):
        abandoned.refresh_from_db()
        assert abandoned.status == PaymentStatus.SUCCEEDED
        assert LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).count() == 1
        assert statement_balance(statement=bill.statement).minor_units == 0


def test_a_processing_payment_does_not_say_nothing_to_pay(make_bill, fake_processor):
    bill = make_bill()
    checkout = open_checkout(bill)
    fake_processor.complete_setup(checkout.config["setupIntentId"])
    fake_processor.create_outcome = "processing"
    _, body = checkout.submit("125.00")

    page = checkout.client.get(checkout.pay_url).content.decode()

    assert "Nothing to pay" not in page
    assert "<h1>Your payment is being processed</h1>" in page
    assert "A payment of $125.00 is being processed" in page

    # Once it has gone through, there is indeed nothing to pay.
    with tenant_scope(bill.tenant):
        fake_processor.set_intent_status(Payment.objects.get().processor_payment_intent_id, "succeeded")
    assert checkout.client.post(body["refreshUrl"]).json()["state"] == "succeeded"
    page = checkout.client.get(checkout.pay_url).content.decode()
    assert "<h1>Nothing to pay</h1>" in page and "paid in full" in page


# --- Staff ----------------------------------------------------------------------------


def _clinic_abandon(clinic, fake_processor):
    guest = clinic.client()
    found = guest.post("/", {"statement_number": clinic.statement.number, "date_of_birth": "1984-02-29"})
    assert found.status_code == 302
    page = guest.get(found["Location"]).content.decode()
    config = json.loads(page.split('id="checkout-config" type="application/json">', 1)[1].split("</script>", 1)[0])
    fake_processor.complete_setup(config["setupIntentId"])
    fake_processor.create_outcome = "requires_action"
    body = guest.post(config["submitUrl"], {"amount": "125.00", "setup_intent_id": config["setupIntentId"]}).json()
    assert body["state"] == "requires_action"
    with tenant_scope(clinic.tenant):
        return Payment.objects.get()


def _cancel_url(payment):
    return reverse("staff:payment-cancel", kwargs={"payment_id": payment.public_id})


def test_staff_see_a_cancel_action_for_a_payment_awaiting_authentication(clinic_a, fake_processor):
    payment = _clinic_abandon(clinic_a, fake_processor)

    desk = clinic_a.client_as(Role.FRONT_DESK).get(reverse("staff:payments")).content.decode()
    officer = clinic_a.client_as(Role.COMPLIANCE_OFFICER).get(reverse("staff:payments")).content.decode()

    assert "Awaiting authentication" in desk and _cancel_url(payment) in desk
    assert "Awaiting authentication" in officer and _cancel_url(payment) not in officer


def test_staff_cancel_releases_the_payment_and_is_audited(clinic_a, fake_processor):
    payment = _clinic_abandon(clinic_a, fake_processor)
    desk = clinic_a.client_as(Role.FRONT_DESK)

    response = desk.post(_cancel_url(payment), follow=True)

    assert response.redirect_chain[-1][0] == reverse("staff:payments")
    assert "was canceled" in response.content.decode()
    (cancel,) = fake_processor.calls_named("cancel_payment")
    assert cancel["idempotency_key"] == f"{payment.idempotency_key_base}-abandon"
    with tenant_scope(clinic_a.tenant):
        payment.refresh_from_db()
        assert payment.status == PaymentStatus.CANCELED and payment.failure_code == "canceled_by_clinic"
        event = AuditEvent.objects.get(action="payment.staff_canceled")
        assert event.actor_user_id == clinic_a.user(Role.FRONT_DESK).public_id
        assert event.target_id == str(payment.public_id)
        assert not LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).exists()


def test_staff_cancel_that_the_processor_refuses_changes_nothing(clinic_a, fake_processor):
    payment = _clinic_abandon(clinic_a, fake_processor)
    fake_processor.cancel_error = ProcessorUnavailable("timeout")

    response = clinic_a.client_as(Role.BILLING_MANAGER).post(_cancel_url(payment), follow=True)

    assert "did not cancel" in response.content.decode()
    with tenant_scope(clinic_a.tenant):
        payment.refresh_from_db()
        assert payment.status == PaymentStatus.REQUIRES_ACTION
        assert not AuditEvent.objects.filter(action="payment.staff_canceled").exists()


def test_staff_cannot_cancel_a_payment_that_is_not_awaiting_authentication(clinic_a, fake_processor):
    payment = _clinic_abandon(clinic_a, fake_processor)
    fake_processor.set_intent_status(payment.processor_payment_intent_id, "succeeded")
    fake_processor.cancel_error = ProcessorError("payment_intent_unexpected_state")

    response = clinic_a.client_as(Role.CLINIC_ADMIN).post(_cancel_url(payment), follow=True)

    assert "not waiting for authentication" in response.content.decode()
    with tenant_scope(clinic_a.tenant):
        payment.refresh_from_db()
        # Re-read from the processor: it had succeeded, and is credited once.
        assert payment.status == PaymentStatus.SUCCEEDED
        assert LedgerEntry.objects.filter(kind=EntryKind.PAYMENT).count() == 1
        assert not AuditEvent.objects.filter(action="payment.staff_canceled").exists()


def test_staff_cancel_needs_the_permission(clinic_a, fake_processor):
    payment = _clinic_abandon(clinic_a, fake_processor)

    response = clinic_a.client_as(Role.COMPLIANCE_OFFICER).post(_cancel_url(payment))

    assert response.status_code == 403
    assert fake_processor.calls_named("cancel_payment") == []
