"""Rotation next to live writes, and with two workers (PostgreSQL, committed rows, real connections).

A batch locks its rows: an application write to one of them waits for the
batch's commit and is then applied (never lost), and a batch that reaches a
row an application transaction holds waits and re-seals the committed value
(never overwrites it with the stale one it would have read).
"""

from __future__ import annotations

import contextvars
import datetime
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from django.db import connection, transaction
from django.test import override_settings

from billing.models import Patient
from billing.services.statements import patient_create
from portal.models import Tenant
from portal.services import tenant_create
from portal.tenancy.context import tenant_scope
from security.crypto import bulk, bulk_sql, cipher, keyring
from security.crypto.models import KeyPurpose, KeyRotation
from security.crypto.providers import LocalKeyProvider, reset_providers, set_provider
from security.crypto.rotation import data_key_rotate, data_key_rotation_run, data_key_rotation_start, rows_using
from tests.security.crypto_support import new_master_key

pytestmark = [pytest.mark.postgres]

ROWS = 40
DOB = datetime.date(1975, 11, 3)


@pytest.fixture
def clinic(transactional_db: None) -> Iterator[Tenant]:
    set_provider("local", LocalKeyProvider(master_keys=[new_master_key()]))
    keyring.forget_all()
    try:
        with override_settings(SETTLE_ACTIVE_KEY_CACHE_SECONDS=0):
            tenant = tenant_create(slug="concurrent", name="Concurrent Clinic")
            with tenant_scope(tenant):
                for n in range(ROWS):
                    patient_create(
                        tenant=tenant,
                        account_number=f"C-{n:03d}",
                        first_name=f"Patient {n:03d}",
                        last_name="Concurrent",
                        date_of_birth=DOB,
                    )
            yield tenant
    finally:
        keyring.forget_all()
        reset_providers()


def _in_thread(target: Callable[[], None]) -> threading.Thread:
    """Run `target` on its own connection, in a copy of this context (the tenant scope goes along)."""
    context = contextvars.copy_context()

    def run() -> None:
        try:
            context.run(target)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _version_of(patient_pk: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT first_name FROM billing_patient WHERE id = %s", [patient_pk])
        return cipher.parse(cursor.fetchone()[0]).version


def test_an_application_write_waits_for_the_batch_and_is_kept(clinic: Tenant) -> None:
    data_key_rotation_start(tenant=clinic, purpose=KeyPurpose.PHI)
    plan = bulk.table_plan(Patient, "phi")
    with tenant_scope(clinic):
        target_pk = Patient.objects.order_by("pk").values_list("pk", flat=True)[5]
        written = threading.Event()

        def application_write() -> None:
            patient = Patient.objects.get(pk=target_pk)
            patient.first_name = "Renamed During Rotation"
            patient.save(update_fields=["first_name"])
            written.set()

        with transaction.atomic():
            rows = bulk_sql.lock_rows_after(plan, tenant_id=clinic.pk, after_pk=0, limit=ROWS)
            writer = _in_thread(application_write)
            time.sleep(0.5)
            assert not written.is_set(), "the application wrote to a row the batch holds"
            batch = bulk.reseal_rows(plan, rows, tenant_id=clinic.pk, version=2)
            bulk_sql.write_batch(plan, batch, tenant_id=clinic.pk)
        writer.join(timeout=10)
        assert written.is_set()
        keyring.forget_all()
        assert Patient.objects.get(pk=target_pk).first_name == "Renamed During Rotation"
        assert Patient.objects.get(pk=target_pk).date_of_birth == DOB


def test_a_batch_waits_for_an_application_transaction_and_reseals_its_value(clinic: Tenant) -> None:
    rotation = data_key_rotation_start(tenant=clinic, purpose=KeyPurpose.PHI)
    with tenant_scope(clinic):
        target_pk = Patient.objects.order_by("pk").values_list("pk", flat=True)[7]
        holding = threading.Event()

        def application_transaction() -> None:
            with transaction.atomic():
                patient = Patient.objects.select_for_update().get(pk=target_pk)
                patient.first_name = "Paid While Rotating"
                patient.save(update_fields=["first_name"])
                holding.set()
                time.sleep(0.5)  # the rotation reaches the row meanwhile

        application = _in_thread(application_transaction)
        assert holding.wait(timeout=10)
        data_key_rotation_run(rotation=rotation, batch_size=ROWS, workers=1)
        application.join(timeout=10)
        keyring.forget_all()
        assert Patient.objects.get(pk=target_pk).first_name == "Paid While Rotating"
        assert _version_of(target_pk) == 2


def test_two_workers_split_the_table_and_rotate_every_row(clinic: Tenant) -> None:
    with override_settings(SETTLE_ACTIVE_KEY_CACHE_SECONDS=0):
        rotation = data_key_rotate(tenant=clinic, purpose=KeyPurpose.PHI, batch_size=7, workers=2)
    assert rotation.rows_done == ROWS
    bounds = rotation.progress["billing.Patient:bounds"]
    assert len(bounds) == 1
    assert rotation.progress["billing.Patient:done"] and rotation.progress["billing.Patient#1:done"]
    keyring.forget_all()
    with tenant_scope(clinic):
        assert rows_using(tenant=clinic, purpose="phi", versions=[1]) == 0
        names = sorted(Patient.objects.values_list("pk", flat=True))
        assert [Patient.objects.get(pk=pk).first_name for pk in names] == [f"Patient {n:03d}" for n in range(ROWS)]
        assert KeyRotation.objects.get(pk=rotation.pk).status == "finished"
