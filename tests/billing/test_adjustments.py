"""Balance adjustments and write-offs: limits and four eyes, one new ledger entry each, the reason list.

Personas (tests/conftest.py): alpha's billing manager adjusts alone up to
$50.00 (RefundPolicy default), its clinic admin approves above that; the
front desk does not adjust. Service rules are pinned on the services; the
pages through HTTP.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

import pytest
from django.db import connection
from django.db.models import ProtectedError
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.models import AuditEvent
from billing.adjustment_models import Adjustment, AdjustmentReason, AdjustmentStatus
from billing.models import EntryKind, LedgerEntry, Payment, PaymentStatus, Statement
from billing.refund_models import Refund, RefundReason, RefundStatus
from billing.services.adjustments import (
    AdjustmentError,
    adjustment_approve,
    adjustment_reasons_for,
    adjustment_reject,
    adjustment_request,
)
from billing.services.checkout import checkout_open
from billing.services.ledger import ledger_credit_payment, statement_balance
from billing.services.refunds import RefundError, refund_request
from portal.money import Money
from portal.tenancy.context import tenant_scope
from security.models import Role
from tests.conftest import Clinic
from tests.factories import StatementFactory

pytestmark = pytest.mark.django_db

FRONT_DESK = Role.FRONT_DESK.value
BILLING = Role.BILLING_MANAGER.value
ADMIN = Role.CLINIC_ADMIN.value


def reason(clinic: Clinic, label: str = "Small-balance write-off") -> AdjustmentReason:
    with tenant_scope(clinic.tenant):
        return next(r for r in adjustment_reasons_for(tenant=clinic.tenant) if r.label == label)


def adjust(clinic: Clinic, amount_minor: int, *, role: str = BILLING, statement: Statement | None = None, **kw: Any):
    with tenant_scope(clinic.tenant):
        return adjustment_request(
            tenant=clinic.tenant,
            actor=clinic.user(role),
            actor_role=role,
            statement=statement or clinic.statement,
            amount=Money(amount_minor, "USD"),
            reason=kw.pop("reason", None) or reason(clinic),
            note=kw.pop("note", "Balance under $10"),
        )


def approve(clinic: Clinic, adjustment: Adjustment, *, role: str = ADMIN) -> Adjustment:
    with tenant_scope(clinic.tenant):
        return adjustment_approve(tenant=clinic.tenant, actor=clinic.user(role), actor_role=role, adjustment=adjustment)


def balance(clinic: Clinic, statement: Statement | None = None) -> int:
    with tenant_scope(clinic.tenant):
        return statement_balance(statement=statement or clinic.statement).minor_units


def entries(clinic: Clinic) -> list[tuple[Any, ...]]:
    with tenant_scope(clinic.tenant):
        return list(
            LedgerEntry.objects.values_list("public_id", "amount_minor", "kind", "adjustment_id").order_by("id")
        )


def actions(clinic: Clinic) -> list[str]:
    events = AuditEvent.objects.filter(tenant=clinic.tenant, action__startswith="adjustment.").order_by("sequence")
    return list(events.values_list("action", flat=True))


# --- Services -----------------------------------------------------------------------------------------


def test_within_the_limit_a_write_off_is_one_new_entry_and_nothing_is_edited(clinic_a: Clinic) -> None:
    before = entries(clinic_a)
    outcome = adjust(clinic_a, -1_000)
    assert outcome.applied and outcome.adjustment.status == AdjustmentStatus.APPLIED
    after = entries(clinic_a)
    assert after[: len(before)] == before  # earlier entries untouched
    (new,) = after[len(before) :]
    assert new[1:] == (-1_000, EntryKind.ADJUSTMENT, outcome.adjustment.pk)
    assert balance(clinic_a) == 12_500 - 1_000
    assert actions(clinic_a) == ["adjustment.requested", "adjustment.applied"]
    requested = AuditEvent.objects.get(action="adjustment.requested")
    assert requested.details["needs_approval"] is False and requested.details["amount_minor"] == -1_000
    assert "Balance under" not in str(requested.details)  # the note is sealed on the adjustment, never audited


def test_above_the_limit_it_waits_for_someone_else_who_may_approve_it_once(clinic_a: Clinic) -> None:
    outcome = adjust(clinic_a, -6_000)  # the billing manager's limit is $50.00
    pending = outcome.adjustment
    assert not outcome.applied and pending.status == AdjustmentStatus.PENDING_APPROVAL
    assert balance(clinic_a) == 12_500
    with pytest.raises(AdjustmentError, match="someone else has to approve"):
        approve(clinic_a, pending, role=BILLING)
    approved = approve(clinic_a, pending)
    assert approved.status == AdjustmentStatus.APPLIED and approved.decided_by == clinic_a.user(ADMIN)
    assert balance(clinic_a) == 6_500
    with pytest.raises(AdjustmentError, match="no longer waiting"):
        approve(clinic_a, pending)  # a second approval (a double click, a colleague) applies nothing more
    written = [e for e in entries(clinic_a) if e[2] == EntryKind.ADJUSTMENT]
    assert [e[1:] for e in written] == [(-6_000, EntryKind.ADJUSTMENT, pending.pk)]
    assert actions(clinic_a) == ["adjustment.requested", "adjustment.approved", "adjustment.applied"]


def test_the_limit_applies_to_either_sign_and_each_role(clinic_a: Clinic) -> None:
    assert not adjust(clinic_a, 5_001).applied
    assert adjust(clinic_a, 5_000).applied
    assert adjust(clinic_a, 50_000, role=ADMIN).applied
    assert not adjust(clinic_a, 100, role=FRONT_DESK).applied  # front desk limit 0 (and no permission on the page)


def test_a_rejection_keeps_its_reason_and_writes_nothing(clinic_a: Clinic) -> None:
    pending = adjust(clinic_a, -9_000).adjustment
    with tenant_scope(clinic_a.tenant):
        with pytest.raises(AdjustmentError, match="Say why"):
            adjustment_reject(
                tenant=clinic_a.tenant, actor=clinic_a.user(ADMIN), actor_role=ADMIN, adjustment=pending, reason=" "
            )
        with pytest.raises(AdjustmentError, match="someone else decides"):
            adjustment_reject(
                tenant=clinic_a.tenant, actor=clinic_a.user(BILLING), actor_role=BILLING, adjustment=pending, reason="x"
            )
        adjustment_reject(
            tenant=clinic_a.tenant,
            actor=clinic_a.user(ADMIN),
            actor_role=ADMIN,
            adjustment=pending,
            reason="Needs the charity-care form",
        )
        pending.refresh_from_db()
    assert pending.status == AdjustmentStatus.REJECTED and pending.rejection_reason == "Needs the charity-care form"
    assert balance(clinic_a) == 12_500
    with pytest.raises(AdjustmentError, match="no longer waiting"):
        approve(clinic_a, pending)
    assert "charity" not in str(AuditEvent.objects.get(action="adjustment.rejected").details)


def test_refusals_change_nothing(clinic_a: Clinic, clinic_b: Clinic) -> None:
    before = entries(clinic_a)
    with pytest.raises(AdjustmentError, match="greater than zero"):
        adjust(clinic_a, 0)
    with pytest.raises(AdjustmentError, match=r"balance is \$125.00"):
        adjust(clinic_a, -12_501, role=ADMIN)
    with pytest.raises(AdjustmentError, match="Choose a reason"):
        adjust(clinic_a, -100, reason=reason(clinic_b))
    with tenant_scope(clinic_a.tenant):
        AdjustmentReason.objects.filter(pk=reason(clinic_a).pk).update(is_active=False)
    with pytest.raises(AdjustmentError, match="Choose a reason"):
        adjust(clinic_a, -100)
    assert entries(clinic_a) == before and actions(clinic_a) == []
    with tenant_scope(clinic_a.tenant):
        assert not Adjustment.objects.exists()


def test_approval_is_refused_when_the_balance_fell_below_the_write_off_meanwhile(clinic_a: Clinic) -> None:
    pending = adjust(clinic_a, -12_000).adjustment
    paid(clinic_a, 5_000)
    with pytest.raises(AdjustmentError, match=r"balance is \$75.00"):
        approve(clinic_a, pending)
    assert balance(clinic_a) == 7_500


def test_a_reason_in_use_is_never_deleted(clinic_a: Clinic) -> None:
    used = adjust(clinic_a, -100).adjustment.reason
    with tenant_scope(clinic_a.tenant), pytest.raises(ProtectedError):
        used.delete()


def _at_once(*calls: Any) -> list[str]:
    """Run each call in its own thread and connection, released together; "applied" or "refused" each."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[str] = []

    def run(call: Any) -> None:
        try:
            barrier.wait(timeout=5)
            call()
            outcomes.append("applied")
        except AdjustmentError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return sorted(outcomes)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_approvals_at_once_apply_once(clinic_a: Clinic) -> None:
    pending = adjust(clinic_a, -1_000, role=FRONT_DESK).adjustment  # the desk's limit is 0: it waits
    outcomes = _at_once(*(lambda role=role: approve(clinic_a, pending, role=role) for role in (BILLING, ADMIN)))
    assert outcomes == ["applied", "refused"]
    assert [e[1] for e in entries(clinic_a) if e[2] == EntryKind.ADJUSTMENT] == [-1_000]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_write_offs_approved_at_once_never_take_the_statement_below_zero(clinic_a: Clinic) -> None:
    first = adjust(clinic_a, -10_000, role=FRONT_DESK).adjustment
    second = adjust(clinic_a, -10_000, role=BILLING).adjustment
    outcomes = _at_once(lambda: approve(clinic_a, first, role=BILLING), lambda: approve(clinic_a, second))
    assert outcomes == ["applied", "refused"]
    assert balance(clinic_a) == 2_500


# --- Pages ---------------------------------------------------------------------------------------------


def _adjust_url(statement: Statement) -> str:
    return reverse("staff:statement-adjust", kwargs={"statement_id": statement.public_id})


def _post(clinic: Clinic, role: str, **data: str):
    form = {"direction": "decrease", "amount": "10.00", "reason": str(reason(clinic).public_id), "note": ""}
    return clinic.client_as(role).post(_adjust_url(clinic.statement), {**form, **data})


def test_the_ledger_page_has_an_adjust_form_per_statement_for_those_who_adjust(clinic_a: Clinic) -> None:
    second = StatementFactory.create(tenant=clinic_a.tenant, patient=clinic_a.patient, number="ALPHA-2002")
    url = reverse("staff:patient-ledger", kwargs={"patient_id": clinic_a.patient.public_id})
    page = clinic_a.client_as(BILLING).get(url).content.decode()
    assert page.count("Adjust balance</button>") == 2
    assert _adjust_url(clinic_a.statement) in page and _adjust_url(second) in page
    assert 'for="adj-' in page  # labelled fields, ids unique per statement
    desk = clinic_a.client_as(FRONT_DESK)
    assert "Adjust balance" not in desk.get(url).content.decode()
    assert _post(clinic_a, FRONT_DESK).status_code == 403
    assert _post(clinic_a, Role.COMPLIANCE_OFFICER.value).status_code == 403


def test_adjust_through_the_pages_request_approve_and_the_ledger_shows_it(clinic_a: Clinic) -> None:
    response = _post(clinic_a, BILLING, amount="80.00", note="Hardship")
    assert response.status_code == 302
    with tenant_scope(clinic_a.tenant):
        pending = Adjustment.objects.get()
    assert pending.amount_minor == -8_000 and pending.status == AdjustmentStatus.PENDING_APPROVAL
    queue = clinic_a.client_as(ADMIN).get(reverse("staff:refunds")).content.decode()
    assert f'id="adjustment-{pending.public_id}"' in queue and "Hardship" in queue
    own = clinic_a.client_as(BILLING).get(reverse("staff:refunds")).content.decode()
    assert "Your request" in own
    approve_url = reverse("staff:adjustment-approve", kwargs={"adjustment_id": pending.public_id})
    assert clinic_a.client_as(BILLING).post(approve_url).status_code == 302  # refused with a message
    with tenant_scope(clinic_a.tenant):
        pending.refresh_from_db()
    assert pending.status == AdjustmentStatus.PENDING_APPROVAL
    assert clinic_a.client_as(ADMIN).post(approve_url).status_code == 302
    ledger = clinic_a.client_as(BILLING).get(
        reverse("staff:patient-ledger", kwargs={"patient_id": clinic_a.patient.public_id})
    )
    page = ledger.content.decode()
    assert 'id="patient-balance">$45.00<' in page and "-$80.00" in page and "Small-balance write-off" in page


def test_a_raise_through_the_page_is_positive(clinic_a: Clinic) -> None:
    assert _post(clinic_a, BILLING, direction="increase", amount="5.00").status_code == 302
    assert balance(clinic_a) == 13_000


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"amount": "0"}, "Enter an amount greater than zero."),
        ({"amount": "-5"}, "Enter an amount such as 25.00."),
        ({"amount": "lots"}, "Enter an amount such as 25.00."),
        ({"amount": "500.00"}, "at most that much can be taken off it"),
        ({"reason": "not-a-reason"}, "Select a valid choice."),
        ({"direction": "sideways"}, "Select a valid choice."),
        ({"note": "x" * 501}, "at most 500 characters"),
    ],
)
def test_bad_adjustment_input_gets_a_message_by_its_field_and_changes_nothing(
    clinic_a: Clinic, data: dict[str, str], message: str
) -> None:
    response = _post(clinic_a, ADMIN, **data)
    page = response.content.decode()
    assert response.status_code == 400 and message in page and 'class="field-error"' in page
    assert '<details class="adjust" open>' in page
    assert balance(clinic_a) == 12_500
    with tenant_scope(clinic_a.tenant):
        assert not Adjustment.objects.exists()


def test_another_clinics_statement_and_adjustment_are_404(clinic_a: Clinic, clinic_b: Clinic) -> None:
    theirs = adjust(clinic_b, -9_000).adjustment
    form = {"direction": "decrease", "amount": "1.00", "reason": str(reason(clinic_a).public_id)}
    assert clinic_a.client_as(ADMIN).post(_adjust_url(clinic_b.statement), form).status_code == 404
    url = reverse("staff:adjustment-approve", kwargs={"adjustment_id": theirs.public_id})
    assert clinic_a.client_as(ADMIN).post(url).status_code == 404


def test_clinic_admins_edit_the_reason_list(clinic_a: Clinic) -> None:
    admin = clinic_a.client_as(ADMIN)
    url = reverse("staff:adjustment-reasons")
    page = admin.get(url).content.decode()
    for label in ("Small-balance write-off", "Charity care", "Insurance adjustment", "Billing error"):
        assert label in page
    assert "Prompt-pay discount" in page and "Other (see note)" in page
    assert admin.post(url, {"label": "  Hardship   plan "}).status_code == 302
    duplicate = admin.post(url, {"label": "hardship plan"})
    assert duplicate.status_code == 400 and "already on the list" in duplicate.content.decode()
    assert admin.post(url, {"label": ""}).status_code == 400
    used = adjust(clinic_a, -100).adjustment.reason
    toggle = reverse("staff:adjustment-reason-active", kwargs={"reason_id": used.public_id})
    assert admin.post(toggle, {"active": "0"}).status_code == 302
    with tenant_scope(clinic_a.tenant):
        used.refresh_from_db()
        labels = [r.label for r in adjustment_reasons_for(tenant=clinic_a.tenant, active_only=True)]
    assert not used.is_active and used.label not in labels and "Hardship plan" in labels
    ledger = clinic_a.client_as(BILLING).get(
        reverse("staff:patient-ledger", kwargs={"patient_id": clinic_a.patient.public_id})
    )
    page = ledger.content.decode()
    assert f'value="{used.public_id}"' not in page and used.label in page  # gone from the form, kept on the record
    assert admin.post(toggle, {"active": "maybe"}).status_code == 302
    assert clinic_a.client_as(BILLING).get(url).status_code == 403
    assert [*AuditEvent.objects.filter(action__startswith="adjustment_reason.").values_list("action", flat=True)] == [
        "adjustment_reason.added",
        "adjustment_reason.deactivated",
    ]


def test_the_last_active_reason_cannot_be_deactivated(clinic_a: Clinic) -> None:
    admin = clinic_a.client_as(ADMIN)
    with tenant_scope(clinic_a.tenant):
        reasons = adjustment_reasons_for(tenant=clinic_a.tenant)
    for r in reasons:
        admin.post(reverse("staff:adjustment-reason-active", kwargs={"reason_id": r.public_id}), {"active": "0"})
    with tenant_scope(clinic_a.tenant):
        assert AdjustmentReason.objects.filter(is_active=True).count() == 1


# --- Property: payments, partial refunds and adjustments keep the ledger whole -------------------


def paid(clinic: Clinic, amount_minor: int, statement: Statement | None = None) -> Payment:
    statement = statement or clinic.statement
    with tenant_scope(clinic.tenant):
        payment = Payment.objects.create(
            tenant=clinic.tenant,
            checkout=checkout_open(tenant=clinic.tenant, statement=statement),
            statement=statement,
            patient=statement.patient,
            attempt_number=1,
            setup_intent_id=f"seti_{secrets.token_hex(4)}",
            amount_minor=amount_minor,
            currency="USD",
            status=PaymentStatus.SUCCEEDED,
            processor_payment_intent_id=f"pi_{secrets.token_hex(6)}",
            receipt_number=f"R-{secrets.token_hex(4).upper()}",
            succeeded_at=timezone.now(),
        )
        ledger_credit_payment(payment=payment, memo="Card payment")
    return payment


_OPS = st.one_of(
    st.tuples(st.just("pay"), st.integers(min_value=100, max_value=30_000)),
    st.tuples(
        st.just("refund"),
        st.integers(min_value=0, max_value=5),
        st.integers(min_value=1, max_value=30_000),
        st.sampled_from(["succeed", "fail", "pending"]),
    ),
    st.tuples(
        st.just("adjust"),
        st.integers(min_value=-30_000, max_value=30_000).filter(bool),
        st.sampled_from(["approve", "reject", "leave"]),
    ),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(due=st.integers(min_value=100, max_value=50_000), ops=st.lists(_OPS, max_size=8))
def test_any_sequence_of_payments_refunds_and_adjustments_keeps_the_ledger_whole(
    clinic_a: Clinic, fake_processor, django_capture_on_commit_callbacks, due: int, ops: list[tuple[Any, ...]]
) -> None:
    statement = StatementFactory.create(
        tenant=clinic_a.tenant, patient=clinic_a.patient, number=f"P-{secrets.token_hex(4)}", amount_due_minor=due
    )
    payments: list[Payment] = []
    for op in ops:
        if op[0] == "pay":
            payments.append(paid(clinic_a, op[1], statement))
        elif op[0] == "refund" and payments:
            fake_processor.refund_outcome = op[3]
            with tenant_scope(clinic_a.tenant), django_capture_on_commit_callbacks(execute=True):
                try:
                    refund_request(
                        tenant=clinic_a.tenant,
                        actor=clinic_a.user(ADMIN),
                        actor_role=ADMIN,
                        payment=payments[op[1] % len(payments)],
                        amount=Money(op[2], "USD"),
                        reason=RefundReason.OVERPAYMENT,
                    )
                except RefundError:
                    pass
        elif op[0] == "adjust":
            before = balance(clinic_a, statement)
            try:
                adjustment = adjust(clinic_a, op[1], statement=statement).adjustment
            except AdjustmentError:
                assert op[1] < 0 and -op[1] > before  # only a write-off beyond the balance is refused
                continue
            if adjustment.status == AdjustmentStatus.PENDING_APPROVAL and op[2] != "leave":
                try:
                    if op[2] == "approve":
                        approve(clinic_a, adjustment)
                    else:
                        with tenant_scope(clinic_a.tenant):
                            adjustment_reject(
                                tenant=clinic_a.tenant,
                                actor=clinic_a.user(ADMIN),
                                actor_role=ADMIN,
                                adjustment=adjustment,
                                reason="No",
                            )
                except AdjustmentError:
                    pass
            if op[1] < 0:
                with tenant_scope(clinic_a.tenant):
                    adjustment.refresh_from_db()
                if adjustment.status == AdjustmentStatus.APPLIED:
                    assert balance(clinic_a, statement) >= 0  # a write-off never leaves a credit
        with tenant_scope(clinic_a.tenant):
            rows = LedgerEntry.objects.filter(statement=statement)
            # The balance is the sum of the entries, and each entry is accounted for by its source.
            assert balance(clinic_a, statement) == sum(r.amount_minor for r in rows)
            succeeded_refunds = Refund.objects.filter(payment__statement=statement, status=RefundStatus.SUCCEEDED)
            applied = Adjustment.objects.filter(statement=statement, status=AdjustmentStatus.APPLIED)
            assert balance(clinic_a, statement) == (
                due
                - sum(p.amount_minor for p in payments)
                + sum(r.amount_minor for r in succeeded_refunds)
                + sum(a.amount_minor for a in applied)
            )
            assert sorted(r.adjustment_id or 0 for r in rows if r.kind == EntryKind.ADJUSTMENT) == sorted(
                a.pk for a in applied
            )
            for payment in payments:
                held = Refund.objects.filter(
                    payment=payment, status__in=[RefundStatus.SUCCEEDED, RefundStatus.PROCESSING]
                )
                assert sum(r.amount_minor for r in held) <= payment.amount_minor


def test_the_ledger_page_takes_the_same_queries_for_1_or_6_statements(clinic_a: Clinic) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = clinic_a.client_as(BILLING)
    url = reverse("staff:patient-ledger", kwargs={"patient_id": clinic_a.patient.public_id})
    client.get(url)  # seeds the reason list

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        # Data keys are fetched as the cipher's cache decides (tests/security); count the page's own queries.
        return sum('"security_datakey"' not in q["sql"] for q in captured.captured_queries)

    one = queries()
    for n in range(5):
        StatementFactory.create(tenant=clinic_a.tenant, patient=clinic_a.patient, number=f"ALPHA-50{n}")
    assert queries() == one
    assert client.get(url).content.decode().count("Adjust balance</button>") == 6
