"""Disputes: followed from the processor's object, money moves recorded once, refunds blocked, staff told.

localstripe has no disputes: the scripted processor holds them and the
webhooks are signed events built here, as Stripe sends them.
"""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse

from audit.models import AuditEvent
from billing.dispute_models import Dispute
from billing.models import EntryKind, LedgerEntry
from billing.processor.stripe_processor import dispute_snapshot_from_dict
from billing.services.ledger import statement_balance
from billing.services.refunds import RefundError
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.billing.test_refunds import ask, paid
from tests.billing.webhook_events import signed_event
from tests.conftest import Clinic, platform_client

pytestmark = pytest.mark.django_db

# A dispute as Stripe's API reference shows it (https://docs.stripe.com/api/disputes/object), trimmed of
# fields the portal does not read; the shapes and names are Stripe's.
STRIPE_DISPUTE = {
    "id": "du_1MtJUT2eZvKYlo2CNaw2HvEv",
    "object": "dispute",
    "amount": 1000,
    "balance_transactions": [
        {
            "id": "txn_1MtJUT2eZvKYlo2C0aZ2oHO6",
            "object": "balance_transaction",
            "amount": -1000,
            "currency": "usd",
            "fee": 1500,
            "net": -2500,
            "reporting_category": "dispute",
            "type": "adjustment",
        }
    ],
    "charge": "ch_1AZtxr2eZvKYlo2CJDX8whov",
    "created": 1680651737,
    "currency": "usd",
    "evidence_details": {"due_by": 1682294399, "has_evidence": False, "past_due": False, "submission_count": 0},
    "is_charge_refundable": False,
    "livemode": False,
    "metadata": {},
    "payment_intent": "pi_3MtJUT2eZvKYlo2C1Ze5I8Fq",
    "reason": "general",
    "status": "warning_needs_response",
}


def test_a_stripe_dispute_object_parses_into_the_facts_we_use() -> None:
    snapshot = dispute_snapshot_from_dict(STRIPE_DISPUTE)
    assert (snapshot.id, snapshot.status, snapshot.amount, snapshot.currency) == (
        "du_1MtJUT2eZvKYlo2CNaw2HvEv",
        "warning_needs_response",
        1000,
        "USD",
    )
    assert snapshot.payment_intent_id == "pi_3MtJUT2eZvKYlo2C1Ze5I8Fq"
    assert snapshot.evidence_due_by == 1682294399 and snapshot.reason == "general"
    assert snapshot.balance_movements == (-1000,)


def deliver(clinic: Clinic, dispute_id: str, event_id: str, event_type: str = "charge.dispute.created"):
    payload, signature = signed_event(
        secret=clinic.webhook_secret,
        event_id=event_id,
        event_type=event_type,
        obj={"id": dispute_id, "object": "dispute", "metadata": {}},
    )
    return platform_client().post(
        reverse("webhooks:stripe", kwargs={"tenant_id": clinic.tenant.public_id}),
        payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature,
    )


def disputed(clinic: Clinic, fake_processor, capture, amount_minor: int = 10_000):
    payment = paid(clinic, amount_minor)
    snapshot = fake_processor.open_dispute(payment.processor_payment_intent_id, amount_minor)
    with capture(execute=True):
        assert deliver(clinic, snapshot.id, "evt_dp_created").status_code == 200
    return payment, snapshot


def chargebacks(clinic: Clinic) -> list[LedgerEntry]:
    with tenant_scope(clinic.tenant):
        return list(LedgerEntry.objects.filter(kind__in=[EntryKind.CHARGEBACK, EntryKind.CHARGEBACK_REVERSAL]))


def test_a_new_dispute_is_recorded_and_billing_staff_are_emailed(
    clinic_a: Clinic, fake_processor, django_capture_on_commit_callbacks
) -> None:
    payment, snapshot = disputed(clinic_a, fake_processor, django_capture_on_commit_callbacks)
    with tenant_scope(clinic_a.tenant):
        dispute = Dispute.objects.get()
    assert (dispute.processor_dispute_id, dispute.status, dispute.reason) == (
        snapshot.id,
        "needs_response",
        "fraudulent",
    )
    assert dispute.payment == payment and dispute.evidence_due_by is not None
    [message] = mail.outbox
    assert sorted(message.to) == sorted(
        [clinic_a.user(Role.BILLING_MANAGER).email, clinic_a.user(Role.CLINIC_ADMIN).email]
    )
    assert payment.receipt_number in str(message.body)
    with tenant_scope(clinic_a.tenant):
        patient_name = clinic_a.patient.last_name
    assert patient_name not in str(message.body) and patient_name not in message.subject
    assert AuditEvent.objects.filter(action="dispute.opened", target_id=str(dispute.public_id)).count() == 1
    # A second delivery of the same event, and another event for it, open nothing new.
    assert deliver(clinic_a, snapshot.id, "evt_dp_created").status_code == 200
    assert deliver(clinic_a, snapshot.id, "evt_dp_updated", "charge.dispute.updated").status_code == 200
    with tenant_scope(clinic_a.tenant):
        assert Dispute.objects.count() == 1
    assert len(mail.outbox) == 1


def test_a_disputed_payment_cannot_be_refunded_until_the_clinic_wins(
    clinic_a: Clinic, fake_processor, django_capture_on_commit_callbacks
) -> None:
    payment, snapshot = disputed(clinic_a, fake_processor, django_capture_on_commit_callbacks)
    with pytest.raises(RefundError, match="disputed"):
        ask(clinic_a, payment, 100)
    page = clinic_a.client_as(Role.BILLING_MANAGER).get(
        reverse("staff:payment", kwargs={"payment_id": payment.public_id})
    )
    text = page.content.decode()
    assert 'id="refund-blocked"' in text and "Refund blocked" in text and 'id="id_amount"' not in text
    assert "Evidence due" in text
    fake_processor.set_dispute(snapshot.id, status="won")
    assert deliver(clinic_a, snapshot.id, "evt_dp_closed", "charge.dispute.closed").status_code == 200
    assert AuditEvent.objects.filter(action="dispute.closed").count() == 1
    assert ask(clinic_a, payment, 100).refund is not None


def test_a_lost_dispute_still_blocks_refunds(
    clinic_a: Clinic, fake_processor, django_capture_on_commit_callbacks
) -> None:
    payment, snapshot = disputed(clinic_a, fake_processor, django_capture_on_commit_callbacks)
    fake_processor.set_dispute(snapshot.id, status="lost")
    deliver(clinic_a, snapshot.id, "evt_dp_lost", "charge.dispute.closed")
    with pytest.raises(RefundError, match="dispute was lost"):
        ask(clinic_a, payment, 100)


def test_withdrawn_and_reinstated_funds_are_each_recorded_once(
    clinic_a: Clinic, fake_processor, django_capture_on_commit_callbacks
) -> None:
    payment, snapshot = disputed(clinic_a, fake_processor, django_capture_on_commit_callbacks, 6_000)
    with tenant_scope(clinic_a.tenant):
        before = statement_balance(statement=clinic_a.statement).minor_units
    fake_processor.set_dispute(snapshot.id, balance_movements=(-6_000,))
    for event_id in ("evt_withdrawn", "evt_withdrawn", "evt_updated_after"):
        assert deliver(clinic_a, snapshot.id, event_id, "charge.dispute.funds_withdrawn").status_code == 200
    [entry] = chargebacks(clinic_a)
    assert (entry.kind, entry.amount_minor, entry.payment_id) == (EntryKind.CHARGEBACK, 6_000, payment.pk)
    with tenant_scope(clinic_a.tenant):
        assert statement_balance(statement=clinic_a.statement).minor_units == before + 6_000
    fake_processor.set_dispute(snapshot.id, status="won", balance_movements=(-6_000, 6_000))
    assert deliver(clinic_a, snapshot.id, "evt_reinstated", "charge.dispute.funds_reinstated").status_code == 200
    assert deliver(clinic_a, snapshot.id, "evt_closed", "charge.dispute.closed").status_code == 200
    kinds = sorted(e.kind for e in chargebacks(clinic_a))
    assert kinds == [EntryKind.CHARGEBACK, EntryKind.CHARGEBACK_REVERSAL]
    with tenant_scope(clinic_a.tenant):
        assert statement_balance(statement=clinic_a.statement).minor_units == before
    actions = list(
        AuditEvent.objects.filter(action__startswith="dispute.").order_by("sequence").values_list("action", flat=True)
    )
    assert actions == ["dispute.opened", "dispute.funds_withdrawn", "dispute.closed", "dispute.funds_reinstated"]


def test_events_in_any_order_give_the_same_record(clinic_a: Clinic, fake_processor) -> None:
    """The withdrawal event arrives first: the dispute is created from the processor's object, funds and all."""
    payment = paid(clinic_a, 4_000)
    snapshot = fake_processor.open_dispute(payment.processor_payment_intent_id, 4_000, balance_movements=(-4_000,))
    assert deliver(clinic_a, snapshot.id, "evt_first", "charge.dispute.funds_withdrawn").status_code == 200
    assert deliver(clinic_a, snapshot.id, "evt_second", "charge.dispute.created").status_code == 200
    with tenant_scope(clinic_a.tenant):
        assert Dispute.objects.count() == 1
    assert [e.amount_minor for e in chargebacks(clinic_a)] == [4_000]


def test_a_dispute_of_a_payment_we_do_not_know_is_ignored(clinic_a: Clinic, fake_processor) -> None:
    snapshot = fake_processor.open_dispute("pi_someone_else", 500)
    assert deliver(clinic_a, snapshot.id, "evt_other").status_code == 200
    with tenant_scope(clinic_a.tenant):
        assert not Dispute.objects.exists()


def test_the_disputes_page_and_dashboard_show_open_disputes(
    clinic_a: Clinic, fake_processor, django_capture_on_commit_callbacks
) -> None:
    payment, _ = disputed(clinic_a, fake_processor, django_capture_on_commit_callbacks)
    manager = clinic_a.client_as(Role.BILLING_MANAGER)
    page = manager.get(reverse("staff:disputes")).content.decode()
    assert str(payment.public_id) in page and "Needs response" in page
    dashboard = manager.get(reverse("staff:dashboard")).content.decode()
    assert 'id="disputes-open">1<' in dashboard
    assert clinic_a.client_as(Role.FRONT_DESK).get(reverse("staff:disputes")).status_code == 403
    listing = manager.get(reverse("staff:payments")).content.decode()
    assert "Disputed" in listing
