"""Patients and statements one at a time (files of them: billing.services.statement_import)."""

from __future__ import annotations

import datetime

from django.db import transaction

from billing.models import EntryKind, LedgerEntry, Patient, Statement
from portal.models import Tenant

# The normaliser of Statement.number_index lives with the other blind-index
# normalisers (security sits below billing); re-exported for billing's callers.
from security.crypto.normalize import normalize_statement_number

__all__ = ["normalize_statement_number", "patient_create", "statement_issue"]


def patient_create(
    *,
    tenant: Tenant,
    account_number: str,
    first_name: str,
    last_name: str,
    date_of_birth: datetime.date,
    email: str = "",
    phone: str = "",
) -> Patient:
    patient = Patient(
        tenant=tenant,
        account_number=account_number,
        first_name=first_name,
        last_name=last_name,
        date_of_birth=date_of_birth,
        email=email,
        phone=phone,
    )
    patient.full_clean(exclude=["tenant"])
    with transaction.atomic():
        patient.save()
    return patient


def statement_issue(
    *,
    tenant: Tenant,
    patient: Patient,
    number: str,
    statement_date: datetime.date,
    due_date: datetime.date,
    amount_due_minor: int,
    summary: str = "",
) -> Statement:
    """Issue a statement and charge its amount to the patient's ledger."""
    if amount_due_minor <= 0:
        raise ValueError("a statement must be for a positive amount")
    if patient.tenant_id != tenant.pk:
        raise ValueError("patient belongs to another tenant")
    if not normalize_statement_number(number):
        raise ValueError("a statement needs a number")
    with transaction.atomic():
        statement = Statement(
            tenant=tenant,
            patient=patient,
            # number_index (the blind index of the number) is computed on save.
            number=number.strip().upper(),
            statement_date=statement_date,
            due_date=due_date,
            amount_due_minor=amount_due_minor,
            currency=tenant.currency,
            summary=summary,
        )
        statement.full_clean(exclude=["tenant", "patient"])
        statement.save()
        LedgerEntry.objects.create(
            tenant=tenant,
            patient=patient,
            statement=statement,
            kind=EntryKind.CHARGE,
            amount_minor=amount_due_minor,
            currency=tenant.currency,
            # Not the number: memos are stored in clear, and the number is PHI-adjacent
            # (it opens the statement with a date of birth). The ledger shows the
            # statement's number beside the memo.
            memo="Statement issued",
        )
    return statement
