"""The ledger: immutable entries, signs that match their kind, balance = sum."""

from __future__ import annotations

import datetime

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from billing.models import (
    Checkout,
    EntryKind,
    ImmutableRowError,
    LedgerEntry,
    Payment,
    PaymentStatus,
)
from billing.services.ledger import ledger_credit_payment, patient_balance, statement_balance
from portal.money import Money
from portal.tenancy.context import tenant_scope
from tests.factories import StatementFactory

pytestmark = pytest.mark.django_db


def _entry(clinic, kind, amount_minor, **extra):
    return LedgerEntry.objects.create(
        tenant=clinic.tenant,
        patient=clinic.patient,
        statement=clinic.statement,
        kind=kind,
        amount_minor=amount_minor,
        currency=clinic.tenant.currency,
        memo="test entry",
        **extra,
    )


def _succeeded_payment(clinic, amount_minor):
    """A payment row as the payment services leave it once the processor says succeeded."""
    checkout = Checkout.objects.create(
        tenant=clinic.tenant,
        statement=clinic.statement,
        expires_at=timezone.now() + datetime.timedelta(hours=1),
    )
    return Payment.objects.create(
        tenant=clinic.tenant,
        checkout=checkout,
        statement=clinic.statement,
        patient=clinic.patient,
        attempt_number=1,
        setup_intent_id="seti_test_1",
        amount_minor=amount_minor,
        currency=clinic.tenant.currency,
        status=PaymentStatus.SUCCEEDED,
    )


# --- immutability ------------------------------------------------------------------------------


def test_an_entry_cannot_be_saved_again(clinic_a):
    with tenant_scope(clinic_a.tenant):
        entry = LedgerEntry.objects.get(statement=clinic_a.statement, kind=EntryKind.CHARGE)
        entry.memo = "edited"
        with pytest.raises(ImmutableRowError):
            entry.save()
        with pytest.raises(ImmutableRowError):
            entry.save(update_fields=["memo"])
        assert LedgerEntry.objects.get(pk=entry.pk).memo != "edited"


def test_an_entry_cannot_be_deleted(clinic_a):
    with tenant_scope(clinic_a.tenant):
        entry = LedgerEntry.objects.get(statement=clinic_a.statement, kind=EntryKind.CHARGE)
        with pytest.raises(ImmutableRowError):
            entry.delete()
        assert LedgerEntry.objects.filter(pk=entry.pk).exists()


@pytest.mark.postgres
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE billing_ledgerentry SET amount_minor = 1 WHERE id = %s",
        "UPDATE billing_ledgerentry SET memo = 'edited' WHERE id = %s",
        "DELETE FROM billing_ledgerentry WHERE id = %s",
    ],
    ids=["update-amount", "update-memo", "delete"],
)
def test_the_database_refuses_to_change_an_entry(clinic_a, statement):
    with tenant_scope(clinic_a.tenant):
        entry = LedgerEntry.objects.get(statement=clinic_a.statement, kind=EntryKind.CHARGE)
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [entry.pk])
        entry.refresh_from_db()
        assert entry.amount_minor == clinic_a.statement.amount_due_minor


@pytest.mark.postgres
def test_the_database_refuses_bulk_queryset_changes(clinic_a):
    """QuerySet.update()/delete() skip the model's save()/delete(); the trigger still holds."""
    with tenant_scope(clinic_a.tenant):
        entries = LedgerEntry.objects.filter(patient=clinic_a.patient)
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            entries.update(memo="edited")
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            entries.delete()
        assert entries.count() == 1


# --- sign constraints -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "amount_minor"),
    [
        (EntryKind.CHARGE, -100),
        (EntryKind.CHARGE, 0),
        (EntryKind.ADJUSTMENT, 0),
    ],
)
def test_sign_must_match_the_kind(clinic_a, kind, amount_minor):
    with tenant_scope(clinic_a.tenant), pytest.raises(IntegrityError), transaction.atomic():
        _entry(clinic_a, kind, amount_minor)


@pytest.mark.parametrize(("kind", "amount_minor"), [(EntryKind.PAYMENT, 100), (EntryKind.REFUND, -100)])
def test_payment_and_refund_signs_are_enforced(clinic_a, kind, amount_minor):
    with tenant_scope(clinic_a.tenant):
        payment = _succeeded_payment(clinic_a, 100)
        with pytest.raises(IntegrityError), transaction.atomic():
            _entry(clinic_a, kind, amount_minor, payment=payment)


@pytest.mark.parametrize(("kind", "amount_minor"), [(EntryKind.PAYMENT, -100), (EntryKind.REFUND, 100)])
def test_payment_and_refund_entries_must_name_their_payment(clinic_a, kind, amount_minor):
    with tenant_scope(clinic_a.tenant), pytest.raises(IntegrityError), transaction.atomic():
        _entry(clinic_a, kind, amount_minor)


def _refund(clinic, payment, amount_minor):
    from billing.refund_models import Refund, RefundReason, RefundStatus

    return Refund.objects.create(
        tenant=clinic.tenant,
        payment=payment,
        amount_minor=amount_minor,
        currency=payment.currency,
        reason=RefundReason.OVERPAYMENT,
        status=RefundStatus.SUCCEEDED,
        requested_by=clinic.user("billing_manager"),
        requested_role="billing_manager",
    )


def test_a_refund_entry_names_its_refund_and_is_written_once(clinic_a):
    with tenant_scope(clinic_a.tenant):
        payment = _succeeded_payment(clinic_a, 2_500)
        with pytest.raises(IntegrityError), transaction.atomic():
            _entry(clinic_a, EntryKind.REFUND, 1_000, payment=payment)
        refund = _refund(clinic_a, payment, 1_000)
        _entry(clinic_a, EntryKind.REFUND, 1_000, payment=payment, refund=refund)
        with pytest.raises(IntegrityError), transaction.atomic():
            _entry(clinic_a, EntryKind.REFUND, 1_000, payment=payment, refund=refund)


def test_a_payment_is_credited_at_most_once(clinic_a):
    with tenant_scope(clinic_a.tenant):
        payment = _succeeded_payment(clinic_a, 2_500)
        ledger_credit_payment(payment=payment, memo="Card payment")
        with pytest.raises(IntegrityError), transaction.atomic():
            ledger_credit_payment(payment=payment, memo="Card payment again")
        assert LedgerEntry.objects.filter(payment=payment, kind=EntryKind.PAYMENT).count() == 1


# --- balances -----------------------------------------------------------------------------------


def test_balance_is_the_sum_of_entries(clinic_a):
    with tenant_scope(clinic_a.tenant):
        statement = clinic_a.statement
        assert statement_balance(statement=statement) == Money(12_500, "USD")
        _entry(clinic_a, EntryKind.ADJUSTMENT, -1_500)
        payment = _succeeded_payment(clinic_a, 4_000)
        ledger_credit_payment(payment=payment, memo="Card payment")
        _entry(clinic_a, EntryKind.REFUND, 1_000, payment=payment, refund=_refund(clinic_a, payment, 1_000))

        entries = list(LedgerEntry.objects.filter(statement=statement).values_list("amount_minor", flat=True))
        assert sorted(entries) == [-4_000, -1_500, 1_000, 12_500]
        assert statement_balance(statement=statement) == Money(sum(entries), "USD") == Money(8_000, "USD")
        assert patient_balance(patient=clinic_a.patient, currency="USD") == Money(8_000, "USD")


def test_patient_balance_sums_all_their_statements_and_no_one_elses(clinic_a, clinic_b):
    with tenant_scope(clinic_a.tenant):
        StatementFactory(tenant=clinic_a.tenant, patient=clinic_a.patient, number="ALPHA-1002", amount_due_minor=3_000)
        assert patient_balance(patient=clinic_a.patient, currency="USD") == Money(15_500, "USD")
    with tenant_scope(clinic_b.tenant):
        assert patient_balance(patient=clinic_b.patient, currency="USD") == Money(12_500, "USD")


def test_issuing_a_statement_charges_the_ledger_once(clinic_a):
    with tenant_scope(clinic_a.tenant):
        entries = LedgerEntry.objects.filter(statement=clinic_a.statement)
        assert [(e.kind, e.amount_minor) for e in entries] == [(EntryKind.CHARGE, 12_500)]
