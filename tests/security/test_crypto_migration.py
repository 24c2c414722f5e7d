"""billing 0003-0005 convert existing plaintext rows to ciphertext with blind indexes and a listing, and back."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from billing.models import Checkout, Patient, ProcessorAccount, Statement
from billing.services.lookup import statement_lookup
from portal.services import tenant_create
from portal.tenancy.context import tenant_scope
from security.crypto.fields import blind_index_filter
from tests.security.crypto_support import latest_migration, migrate_to

BEFORE = ("billing", "0002_row_level_security")
# 0003-0005 seal the rows; later migrations run too, so the models match the schema.
AFTER = latest_migration("billing")


@pytest.fixture
def at_plaintext_schema(transactional_db: None) -> Iterator[None]:
    migrate_to(BEFORE)
    try:
        yield
    finally:
        migrate_to(AFTER)


def _one(sql: str, params: list[Any] | None = None) -> tuple[Any, ...]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        row = cursor.fetchone()
        assert row is not None
        return tuple(row)


@pytest.mark.postgres
@pytest.mark.usefixtures("at_plaintext_schema")
def test_migration_encrypts_existing_rows_and_reverses() -> None:
    tenant = tenant_create(slug="legacy", name="Legacy Clinic")
    patient_uuid, statement_uuid = uuid.uuid4(), uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO billing_patient (public_id, tenant_id, account_number, first_name, last_name, date_of_birth,"
            " email, phone, created_at) VALUES (%s, %s, 'L-0001', 'Olive', 'Oldrow', '1950-06-01',"
            " 'olive@example.com', '+12025550111', now()) RETURNING id",
            [patient_uuid, tenant.pk],
        )
        patient_id = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO billing_statement (public_id, tenant_id, patient_id, number, lookup_key, statement_date,"
            " due_date, amount_due_minor, currency, summary, created_at) VALUES (%s, %s, %s, 'LG-5501', 'LG5501',"
            " '2026-10-01', '2026-11-01', 5000, 'USD', 'Legacy visit', now())",
            [statement_uuid, tenant.pk, patient_id],
        )
        cursor.execute(
            "INSERT INTO billing_checkout (public_id, tenant_id, statement_id, setup_intent_id,"
            " setup_intent_client_secret, created_at, expires_at) SELECT %s, %s, id, 'seti_legacy',"
            " 'seti_legacy_secret_Qx7', now(), now() FROM billing_statement WHERE public_id = %s",
            [uuid.uuid4(), tenant.pk, statement_uuid],
        )
        cursor.execute(
            "INSERT INTO billing_processoraccount (tenant_id, publishable_key, secret_key, webhook_secret,"
            " card_check_policy, updated_at) VALUES (%s, 'pk_test_legacy', 'sk_test_legacy', 'whsec_legacy',"
            " 'flag', now())",
            [tenant.pk],
        )

    migrate_to(AFTER)

    (listing,) = _one("SELECT listing FROM billing_patient WHERE id = %s", [patient_id])
    assert str(listing).startswith(f"s1:{tenant.pk}:phi:1:") and "Olive" not in str(listing)
    first_name, dob, account_index = _one(
        "SELECT first_name, date_of_birth, account_number_index FROM billing_patient WHERE id = %s", [patient_id]
    )
    assert str(first_name).startswith(f"s1:{tenant.pk}:phi:1:") and str(dob).startswith("s1:")
    assert str(account_index).startswith("b1:")
    number, summary = _one("SELECT number, summary FROM billing_statement WHERE public_id = %s", [statement_uuid])
    # Sealed, not merely transformed: a short token like "LG" can occur in
    # random base64 by chance, so check the whole plaintext and the prefix.
    assert str(number).startswith(f"s1:{tenant.pk}:phi:") and "LG-5501" not in str(number)
    assert str(summary).startswith(f"s1:{tenant.pk}:phi:") and "Legacy visit" not in str(summary)
    secret, webhook = _one("SELECT secret_key, webhook_secret FROM billing_processoraccount")
    assert str(secret).startswith(f"s1:{tenant.pk}:secret:1:") and "whsec" not in str(webhook)
    (client_secret,) = _one("SELECT setup_intent_client_secret FROM billing_checkout")
    assert str(client_secret).startswith(f"s1:{tenant.pk}:secret:1:") and "legacy" not in str(client_secret)

    with tenant_scope(tenant):
        patient = Patient.objects.get(pk=patient_id)
        assert (patient.first_name, patient.date_of_birth, patient.phone) == (
            "Olive",
            datetime.date(1950, 6, 1),
            "+12025550111",
        )
        # 0005 sealed the list columns of the row, from the ciphertexts 0003 wrote.
        assert dict(patient.listing) == {
            "first_name": "Olive",
            "last_name": "Oldrow",
            "date_of_birth": datetime.date(1950, 6, 1),
            "account_number": "L-0001",
            "phone": "+12025550111",
        }
        assert ProcessorAccount.objects.get().secret_key == "sk_test_legacy"
        assert Checkout.objects.get().setup_intent_client_secret == "seti_legacy_secret_Qx7"
        found = statement_lookup(
            tenant=tenant, number="lg 5501", date_of_birth=datetime.date(1950, 6, 1), ip="192.0.2.7"
        )
        assert found.public_id == statement_uuid and found.summary == "Legacy visit"
        assert Patient.objects.filter(
            blind_index_filter(tenant_id=tenant.pk, model=Patient, field_name="account_number_index", values=["L-0001"])
        ).exists()
        assert Statement.objects.count() == 1

    # Backwards: plaintext again, lookup_key rebuilt.
    migrate_to(BEFORE)
    assert _one("SELECT first_name, date_of_birth::text FROM billing_patient WHERE id = %s", [patient_id]) == (
        "Olive",
        "1950-06-01",
    )
    assert _one("SELECT number, lookup_key, summary FROM billing_statement") == ("LG-5501", "LG5501", "Legacy visit")
    assert _one("SELECT secret_key FROM billing_processoraccount") == ("sk_test_legacy",)
    assert _one("SELECT setup_intent_client_secret FROM billing_checkout") == ("seti_legacy_secret_Qx7",)
