"""Refunds: limits and four eyes, never more than captured, ledger only on the processor's word, once.

Personas (tests/conftest.py): alpha's front desk asks, its billing manager
approves; the scripted processor (tests/billing/fakes.py) says what a refund
does. Service rules are pinned on the services; the pages through HTTP.
"""

from __future__ import annotations

import secrets
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.models import AuditEvent
from billing.models import EntryKind, LedgerEntry, Payment, PaymentStatus
from billing.refund_models import Refund, RefundPolicy, RefundReason, RefundStatus
from billing.services.checkout import checkout_open
from billing.services.ledger import ledger_credit_payment, statement_balance
from billing.services.refunds import (
    _BLOCKERS,
    RefundError,
    payment_refundable,
    refund_approve,
    refund_reject,
    refund_request,
    refunds_settle_stuck_for_tenant,
    register_refund_blocker,
)
from portal.money import Money
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.billing.webhook_events import signed_event
from tests.conftest import Clinic, platform_client

pytestmark = pytest.mark.django_db

FRONT_DESK = Role.FRONT_DESK.value
BILLING = Role.BILLING_MANAGER.value
ADMIN = Role.CLINIC_ADMIN.value


def paid(clinic: Clinic, amount_minor: int = 10_000, *, status: str = PaymentStatus.SUCCEEDED) -> Payment:
    """A payment of the clinic's statement that the processor captured, credited to the ledger."""
    with tenant_scope(clinic.tenant):
        checkout = checkout_open(tenant=clinic.tenant, statement=clinic.statement)
        payment = Payment.objects.create(
            tenant=clinic.tenant,
            checkout=checkout,
            statement=clinic.statement,
            patient=clinic.patient,
            attempt_number=1,
            setup_intent_id=f"seti_{secrets.token_hex(4)}",
            amount_minor=amount_minor,
            currency="USD",
            status=status,
            processor_payment_intent_id=f"pi_{secrets.token_hex(6)}",
            card_brand="visa",
            card_last4="4242",
            receipt_number=f"R-{secrets.token_hex(4).upper()}" if status == PaymentStatus.SUCCEEDED else "",
            succeeded_at=timezone.now() if status == PaymentStatus.SUCCEEDED else None,
        )
        if status == PaymentStatus.SUCCEEDED:
            ledger_credit_payment(payment=payment, memo="Card payment")
    return payment


def ask(clinic: Clinic, payment: Payment, amount_minor: int, *, role: str = BILLING, capture=None):
    """refund_request as `role`, running the on-commit send when `capture` is given."""

    def call():
        return refund_request(
            tenant=clinic.tenant,
            actor=clinic.user(role),
            actor_role=role,
            payment=payment,
            amount=Money(amount_minor, "USD"),
            reason=RefundReason.OVERPAYMENT,
            note="Paid twice at the desk",
        )

    with tenant_scope(clinic.tenant):
        if capture is None:
            return call()
        with capture(execute=True):
            outcome = call()
        outcome.refund.refresh_from_db()
        return outcome


def approve(clinic: Clinic, refund: Refund, capture, *, role: str = BILLING) -> Refund:
    with tenant_scope(clinic.tenant):
        with capture(execute=True):
            refund_approve(tenant=clinic.tenant, actor=clinic.user(role), actor_role=role, refund=refund)
        refund.refresh_from_db()
    return refund


def refund_entries(clinic: Clinic) -> list[LedgerEntry]:
    with tenant_scope(clinic.tenant):
        return list(LedgerEntry.objects.filter(kind=EntryKind.REFUND))


def actions(clinic: Clinic) -> list[str]:
    events = AuditEvent.objects.filter(tenant=clinic.tenant, action__startswith="refund.").order_by("sequence")
    return list(events.values_list("action", flat=True))


# --- Within the limit -------------------------------------------------------------------------------


def test_within_the_limit_the_refund_is_sent_and_credited_when_the_processor_confirms(
    clinic_a: Clinic, fake_processor, django_capture_on_commit_callbacks
) -> None:
    payment = paid(clinic_a)
    with tenant_scope(clinic_a.tenant):
        before = statement_balance(statement=clinic_a.statement)
    outcome = ask(clinic_a, payment, 2_500, capture=django_capture_on_commit_callbacks)
    refund = outcome.refund
    assert outcome.sent and refund.status == RefundStatus.SUCCEEDED
    [call] = fake_processor.calls_named("create_refund")
    assert call["idempotency_key"] == f"settle-refund-{refund.public_id}"
    assert call["amount"] == 2_500 and call["payment_intent_id"] == payment.processor_payment_intent_id
    # Opaque ids only: nothing about the patient reaches the processor.
    assert set(call["metadata"]) == {"settle_tenant", "settle_refund", "settle_payment"}
    [entry] = refund_entries(clinic_a)
    assert (entry.amount_minor, entry.refund_id, entry.payment_id) == (2_500, refund.pk, payment.pk)
    with tenant_scope(clinic_a.tenant):
        assert statement_balance(statement=clinic_a.statement) == before + Money(2_500, "USD")
    assert refund.receipt_number.startswith("RF-")
    assert actions(clinic_a) == ["refund.requested", "refund.succeeded"]


def test_the_refund_ledger_entry_waits_for_the_processors_success(
    clinic_a: Clinic, fake_processor, django_capture_on_commit_callbacks
) -> None:
    fake_processor.refund_outcome = "pending"
    refund = ask(clinic_a, paid(clinic_a), 2_500, capture=django_capture_on_commit_callbacks).refund
    assert refund.status == RefundStatus.PROCESSING and refund.processor_refund_id
    assert refund_entries(clinic_a) == []


# --- Four eyes ----------------------------------------------------------------------------------------


def test_a_front_desk_request_waits_until_a_billing_manager_approves(
    clinic_a: Clinic, fake_processor, django_capture_on_commit_callbacks
) -> None:
    payment = paid(clinic_a)
    outcome = ask(clinic_a, payment, 1_000, role=FRONT_DESK, capture=django_capture_on_commit_callbacks)
    assert not outcome.sent and outcome.refund.status == RefundStatus.PENDING_APPROVAL
    assert fake_processor.calls_named("create_refund") == [] and refund_entries(clinic_a) == []
    refund = approve(clinic_a, outcome.refund, django_capture_on_commit_callbacks)
    assert refund.status == RefundStatus.SUCCEEDED and refund.decided_by == clinic_a.user(BILLING)
    assert len(refund_entries(clinic_a)) == 1
    assert actions(clinic_a) == ["refund.requested", "refund.approved", "refund.succeeded"]


def test_above_the_limit_a_billing_manager_needs_someone_else(
    clinic_a: Clinic, fake_processor, django_capture_on_commit_callbacks
) -> None:
    payment = paid(clinic_a, 90_000)
    outcome = ask(clinic_a, payment, 60_000, role=BILLING, capture=django_capture_on_commit_callbacks)
    assert outcome.refund.status == RefundStatus.PENDING_APPROVAL
    with pytest.raises(RefundError, match="someone else has to approve"):
        approve(clinic_a, outcome.refund, django_capture_on_commit_callbacks, role=BILLING)
    assert approve(clinic_a, outcome.refund, django_capture_on_commit_callbacks, role=ADMIN).status == "succeeded"


def test_the_clinics_policy_sets_the_limits(
    clinic_a: Clinic, fake_processor, django_capture_on_commit_callbacks
) -> None:
    with tenant_scope(clinic_a.tenant):
        RefundPolicy.objects.create(tenant=clinic_a.tenant, front_desk_limit_minor=2_000, billing_manager_limit_minor=0)
    payment = paid(clinic_a)
    assert ask(clinic_a, payment, 2_000, role=FRONT_DESK, capture=django_capture_on_commit_callbacks).sent
    assert not ask(clinic_a, payment, 100, role=BILLING, capture=django_capture_on_commit_callbacks).sent


def test_a_rejection_keeps_its_reason_and_sends_nothing(
    clinic_a: Clinic, fake_processor, django_capture_on_commit_callbacks
) -> None:
    refund = ask(clinic_a, paid(clinic_a), 1_000, role=FRONT_DESK).refund
    with tenant_scope(clinic_a.tenant):
        with pytest.raises(RefundError, match="Say why"):
            refund_reject(
                tenant=clinic_a.tenant, actor=clinic_a.user(BILLING), actor_role=BILLING, refund=refund, reason=" "
            )
        refund_reject(
            tenant=clinic_a.tenant,
            actor=clinic_a.user(BILLING),
            actor_role=BILLING,
            refund=refund,
            reason="Not a duplicate",
        )
        refund.refresh_from_db()
        with pytest.raises(RefundError, match="no longer waiting"):
            refund_approve(tenant=clinic_a.tenant, actor=clinic_a.user(ADMIN), actor_role=ADMIN, refund=refund)
    assert (refund.status, refund.rejection_reason) == (RefundStatus.REJECTED, "Not a duplicate")
    assert fake_processor.calls_named("create_refund") == []
    # The free-text reason stays out of the audit trail.
    assert "Not a duplicate" not in str(list(AuditEvent.objects.values_list("details", flat=True)))


# --- Never more than captured --------------------------------------------------------------------


def test_partial_refunds_add_up_to_the_captured_amount_and_no_further(
    clinic_a: Clinic, fake_processor, django_capture_on_commit_callbacks
) -> None:
    payment = paid(clinic_a, 10_000)
    ask(clinic_a, payment, 4_000, capture=django_capture_on_commit_callbacks)
    ask(clinic_a, payment, 3_000, role=FRONT_DESK)  # pending: spoken for
    with pytest.raises(RefundError, match=r"At most \$30.00"):
        ask(clinic_a, payment, 3_001)
    ask(clinic_a, payment, 3_000, capture=django_capture_on_commit_callbacks)
    with tenant_scope(clinic_a.tenant):
        assert payment_refundable(payment=payment) == Money(0, "USD")


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (PaymentStatus.REQUIRES_CAPTURE, "only authorised"),
        (PaymentStatus.PROCESSING, "Only a payment that succeeded"),
        (PaymentStatus.CANCELED, "Only a payment that succeeded"),
    ],
)
def test_only_captured_payments_can_be_refunded(clinic_a: Clinic, fake_processor, status: str, message: str) -> None:
    with pytest.raises(RefundError, match=message):
        ask(clinic_a, paid(clinic_a, status=status), 100)
    with tenant_scope(clinic_a.tenant):
        assert not Refund.objects.exists()


def test_a_registered_blocker_refuses_the_refund(clinic_a: Clinic, fake_processor) -> None:
    def disputed(payment: Payment) -> str | None:
        return "This payment is disputed; it cannot be refunded while the dispute is open."

    register_refund_blocker(disputed)
    try:
        with pytest.raises(RefundError, match="disputed"):
            ask(clinic_a, paid(clinic_a), 100)
    finally:
        _BLOCKERS.remove(disputed)


# --- Failures and faults ----------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["fail", "refuse"])
def test_a_failed_refund_says_why_and_writes_no_entry(
    clinic_a: Clinic, fake_processor, django_capture_on_commit_callbacks, outcome: str
) -> None:
    fake_processor.refund_outcome = outcome
    payment = paid(clinic_a)
    refund = ask(clinic_a, payment, 1_000, capture=django_capture_on_commit_callbacks).refund
    assert refund.status == RefundStatus.FAILED and refund.failure_message
    assert refund_entries(clinic_a) == []
    # A failed refund no longer holds the amount.
    with tenant_scope(clinic_a.tenant):
        assert payment_refundable(payment=payment) == Money(10_000, "USD")
    assert actions(clinic_a)[-1] == "refund.failed"


def test_an_unreachable_processor_is_retried_with_the_same_key(
    clinic_a: Clinic, fake_processor, django_capture_on_commit_callbacks
) -> None:
    fake_processor.refund_outcome = "unavailable"
    refund = ask(clinic_a, paid(clinic_a), 1_000, capture=django_capture_on_commit_callbacks).refund
    assert refund.status == RefundStatus.PROCESSING and refund.processor_unreachable_at
    fake_processor.refund_outcome = "succeed"
    with tenant_scope(clinic_a.tenant):
        Refund.objects.filter(pk=refund.pk).update(requested_at=timezone.now() - timedelta(minutes=11))
    assert refunds_settle_stuck_for_tenant(tenant=clinic_a.tenant) == 1
    with tenant_scope(clinic_a.tenant):
        refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    keys = {call["idempotency_key"] for call in fake_processor.calls_named("create_refund")}
    assert keys == {f"settle-refund-{refund.public_id}"}
    assert len(refund_entries(clinic_a)) == 1


# --- The refund webhook ------------------------------------------------------------------------------


def _deliver(clinic: Clinic, refund_snapshot_id: str, event_id: str):
    payload, signature = signed_event(
        secret=clinic.webhook_secret,
        event_id=event_id,
        event_type="refund.updated",
        obj={"id": refund_snapshot_id, "object": "refund", "metadata": {}},
    )
    return platform_client().post(
        reverse("webhooks:stripe", kwargs={"tenant_id": clinic.tenant.public_id}),
        payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature,
    )


def test_the_refund_webhook_credits_once(clinic_a: Clinic, fake_processor, django_capture_on_commit_callbacks) -> None:
    fake_processor.refund_outcome = "pending"
    refund = ask(clinic_a, paid(clinic_a), 2_000, capture=django_capture_on_commit_callbacks).refund
    fake_processor.set_refund_status(refund.processor_refund_id, "succeeded")
    for _ in range(3):
        assert _deliver(clinic_a, refund.processor_refund_id, "evt_refund_1").status_code == 200
    with tenant_scope(clinic_a.tenant):
        refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert len(refund_entries(clinic_a)) == 1
    # A later event for the same refund changes nothing more.
    assert _deliver(clinic_a, refund.processor_refund_id, "evt_refund_2").status_code == 200
    assert len(refund_entries(clinic_a)) == 1


def test_a_refund_webhook_for_a_refund_we_do_not_know_is_ignored(clinic_a: Clinic, fake_processor) -> None:
    snapshot = fake_processor.create_refund(payment_intent_id="pi_other", amount=100, metadata={}, idempotency_key="k")
    assert _deliver(clinic_a, snapshot.id, "evt_unknown").status_code == 200
    assert refund_entries(clinic_a) == []


# --- Property: the ledger stays the sum, refunds never exceed the capture ---------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    captured=st.integers(min_value=100, max_value=50_000),
    requests=st.lists(
        st.tuples(st.integers(min_value=1, max_value=60_000), st.sampled_from(["succeed", "fail", "pending"])),
        max_size=6,
    ),
)
def test_any_sequence_of_refunds_keeps_the_ledger_whole(
    clinic_a: Clinic, fake_processor, django_capture_on_commit_callbacks, captured: int, requests
) -> None:
    payment = paid(clinic_a, captured)
    for amount, outcome in requests:
        fake_processor.refund_outcome = outcome
        try:
            ask(clinic_a, payment, amount, capture=django_capture_on_commit_callbacks)
        except RefundError:
            pass
    with tenant_scope(clinic_a.tenant):
        refunds = Refund.objects.filter(payment=payment)
        succeeded = sum(r.amount_minor for r in refunds if r.status == RefundStatus.SUCCEEDED)
        open_total = sum(r.amount_minor for r in refunds if r.status in ("succeeded", "processing"))
        entries = LedgerEntry.objects.filter(payment=payment)
        assert open_total <= captured
        assert sum(e.amount_minor for e in entries if e.kind == EntryKind.REFUND) == succeeded
        assert sum(e.amount_minor for e in entries) == succeeded - captured
        balance = statement_balance(statement=clinic_a.statement).minor_units
        assert balance == sum(
            LedgerEntry.objects.filter(statement=clinic_a.statement).values_list("amount_minor", flat=True)
        )


# --- Pages ---------------------------------------------------------------------------------------------------


def test_the_payment_page_shows_the_payment_its_timeline_and_a_refund_form(clinic_a: Clinic, fake_processor) -> None:
    payment = paid(clinic_a)
    response = clinic_a.client_as(FRONT_DESK).get(reverse("staff:payment", kwargs={"payment_id": payment.public_id}))
    page = response.content.decode()
    assert response.status_code == 200
    assert str(payment.processor_payment_intent_id) in page and "Visa ending in 4242" in page
    assert 'id="timeline"' in page and "Refund this payment" in page
    assert AuditEvent.objects.filter(action="payment.viewed", target_id=str(payment.public_id)).exists()


def test_refund_through_the_pages_request_approve_receipt(
    clinic_a: Clinic, fake_processor, django_capture_on_commit_callbacks
) -> None:
    payment = paid(clinic_a)
    url = reverse("staff:payment-refund", kwargs={"payment_id": payment.public_id})
    desk = clinic_a.client_as(FRONT_DESK)
    bad = desk.post(url, {"amount": "500.00", "reason": RefundReason.DUPLICATE})
    assert bad.status_code == 400 and "At most $100.00" in bad.content.decode()
    assert desk.post(url, {"amount": "12.50", "reason": RefundReason.DUPLICATE, "note": ""}).status_code == 302
    with tenant_scope(clinic_a.tenant):
        refund = Refund.objects.get()
    assert refund.status == RefundStatus.PENDING_APPROVAL

    manager = clinic_a.client_as(BILLING)
    queue = manager.get(reverse("staff:refunds")).content.decode()
    assert str(refund.public_id) in queue
    assert desk.get(reverse("staff:refunds")).status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        assert manager.post(reverse("staff:refund-approve", kwargs={"refund_id": refund.public_id})).status_code == 302
    with tenant_scope(clinic_a.tenant):
        refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    receipt = manager.get(reverse("staff:refund-receipt", kwargs={"refund_id": refund.public_id}))
    assert receipt.status_code == 200 and refund.receipt_number in receipt.content.decode()
    pdf = manager.get(reverse("staff:refund-receipt-pdf", kwargs={"refund_id": refund.public_id}))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_no_receipt_for_a_refund_not_yet_confirmed(clinic_a: Clinic, fake_processor) -> None:
    refund = ask(clinic_a, paid(clinic_a), 100, role=FRONT_DESK).refund
    response = clinic_a.client_as(BILLING).get(reverse("staff:refund-receipt", kwargs={"refund_id": refund.public_id}))
    assert response.status_code == 404


# --- Concurrency (PostgreSQL) -----------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_approvals_at_once_refund_once(clinic_a: Clinic, fake_processor) -> None:
    payment = paid(clinic_a)
    refund = ask(clinic_a, payment, 1_000, role=FRONT_DESK).refund
    fake_processor.refund_delay = 0.3
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def decide(role: str) -> None:
        try:
            barrier.wait(timeout=5)
            with tenant_scope(clinic_a.tenant):
                refund_approve(tenant=clinic_a.tenant, actor=clinic_a.user(role), actor_role=role, refund=refund)
            outcomes.append("approved")
        except RefundError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(role,)) for role in (BILLING, ADMIN)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["approved", "refused"]
    assert len(fake_processor.calls_named("create_refund")) == 1
    assert len(refund_entries(clinic_a)) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_webhook_racing_the_answer_writes_one_entry(clinic_a: Clinic, fake_processor) -> None:
    from billing.services.refunds import refund_apply

    fake_processor.refund_outcome = "pending"
    refund = ask(clinic_a, paid(clinic_a), 1_000).refund
    from billing.services.refunds import refund_submit

    with tenant_scope(clinic_a.tenant):
        refund = refund_submit(tenant=clinic_a.tenant, refund_id=refund.pk)
    snapshot = fake_processor.set_refund_status(refund.processor_refund_id, "succeeded")
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def settle(kind: str) -> None:
        try:
            barrier.wait(timeout=5)
            if kind == "webhook":
                assert _deliver(clinic_a, snapshot.id, "evt_race").status_code == 200
            else:
                with tenant_scope(clinic_a.tenant):
                    refund_apply(refund_id=refund.pk, snapshot=snapshot, source="refund")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=settle, args=(kind,)) for kind in ("webhook", "answer", "answer")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert len(refund_entries(clinic_a)) == 1
