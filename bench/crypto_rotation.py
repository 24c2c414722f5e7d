"""Rotation throughput on PostgreSQL: re-encrypting patients against a raw SQL UPDATE.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/crypto_rotation.py [--rows 100000]

Seeds `rows` patients of one clinic (6 encrypted fields, the sealed list
projection and 5 blind indexes each): the values are sealed with the real cipher (security.crypto.cipher,
bound to each row) and loaded with COPY, which is ~10x faster than the ORM
and gives the same rows. Then times `data_key_rotate(purpose="phi")` (new key
version; every value opened and re-sealed in batches, progress stored per
batch; old key retired) against, as the baseline, one raw SQL UPDATE that
rewrites the same seven columns with same-sized values:

- "raw UPDATE, same table": billing_patient itself, with all its indexes and
  constraints, the same rows; the columns are put back afterwards (untimed)
  and the table is compacted (VACUUM FULL) before each timed step, so the
  baseline and the rotation start from the same physical table. This is the
  ratio the target is about.
- "raw UPDATE, bare copy": the earlier baseline, a CREATE TABLE AS copy with
  no indexes or constraints (cheaper to update), still printed so the change
  of baseline is visible.

Peak RSS (ru_maxrss) is read before and after the rotation: flat means
memory does not grow with the table (compare --rows 100000 with 1000000).
Targets (issue 4): >= 0.5x the raw rate, flat memory.

--keep-db keeps test_bench_rotation_<rows> (seeding 1,000,000 rows takes
~15 min on a busy machine) for the next run, which then rotates the next key
version of the same rows; it needs SETTLE_MASTER_KEY set in the environment.
--rotation-only skips the two baselines (each is two full-table UPDATEs).
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import time
import uuid
from types import SimpleNamespace
from typing import Any

MASTER_KEY_GIVEN = bool(os.environ.get("SETTLE_MASTER_KEY"))  # before crypto_support sets a random one

from crypto_support import peak_rss_mb, teardown  # noqa: E402


def setup(name: str, *, keepdb: bool) -> Any:
    """Django on the database test_bench_<name>: fresh, or the kept one (crypto_support.setup, plus keepdb)."""
    import django

    django.setup()
    from django.db import connection

    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"test_bench_{name}"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=keepdb, serialize=False)
    return connection


def _patient_count(connection: Any, tenant_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM billing_patient WHERE tenant_id = %s", [tenant_id])
        return int(cursor.fetchone()[0])


COLUMNS = ["account_number", "first_name", "last_name", "date_of_birth", "email", "phone", "listing"]
# Same-sized rewrite of each column: a character permutation (and its inverse to put them back).
SCRAMBLE = ", ".join(f"{c} = translate({c}, 'ABCabc', 'BCAbca')" for c in COLUMNS)
UNSCRAMBLE = ", ".join(f"{c} = translate({c}, 'BCAbca', 'ABCabc')" for c in COLUMNS)


def patient_values(n: int) -> dict[str, Any]:
    return {
        "account_number": f"R-{n:07d}",
        "first_name": f"Firstname{n}",
        "last_name": f"Lastname{n}",
        "date_of_birth": datetime.date(1950, 1, 1) + datetime.timedelta(days=n % 20000),
        "email": f"patient{n}@example.com",
        "phone": f"+1202555{n % 10000:04d}",
    }


def seed_patients(connection: Any, tenant: Any, rows: int) -> None:
    """COPY `rows` patients whose columns are sealed and indexed as Patient.save() would.

    The tenant's keys are fetched once (keyring) and every value goes through
    the cipher's own sealing and index functions, as Patient.save() does per value.
    """
    from django.utils import timezone

    from billing.models import Patient
    from security.crypto import cipher, keyring
    from security.crypto.fields import BlindIndexField, EncryptedFieldMixin
    from security.crypto.projection import EncryptedProjectionField

    fields: list[Any] = list(Patient._meta.concrete_fields)
    encrypted: list[Any] = [f for f in fields if isinstance(f, EncryptedFieldMixin)]
    indexes: list[Any] = [f for f in fields if isinstance(f, BlindIndexField)]
    names = ["tenant_id", "public_id", "created_at", *(f.column for f in encrypted), *(f.column for f in indexes)]
    created = timezone.now().isoformat()
    version, aead = keyring.encryption_aead(tenant_id=tenant.pk, purpose="phi")
    index_version, index_key = keyring.encryption_key(tenant_id=tenant.pk, purpose="index")
    with connection.cursor() as cursor:
        for offset in range(0, rows, 10_000):
            lines = []
            for n in range(offset, min(offset + 10_000, rows)):
                values = patient_values(n)
                public_id = str(uuid.uuid4())
                line: list[str] = [str(tenant.pk), public_id, created]
                for field in encrypted:
                    binding = cipher.Binding(
                        tenant_id=tenant.pk, model_label="billing.Patient", field_name=field.name, row_id=public_id
                    )
                    if isinstance(field, EncryptedProjectionField):
                        # The list projection: what Patient.save() seals from the source values.
                        plaintext = field.to_plaintext_bytes(field.projection_texts(SimpleNamespace(**values)))
                    else:
                        plaintext = field.to_plaintext_bytes(values[field.name])
                    line.append(cipher._seal(plaintext, binding=binding, purpose="phi", version=version, aead=aead))
                for index in indexes:
                    normalized = index.normalized([values[source] for source in index.sources])
                    digest = cipher._index_digest(index_key, index_name=index.index_name, normalized=normalized)
                    line.append(f"b{index_version}:{digest}")
                lines.append("\t".join(line))
            cursor.copy_expert(
                f"COPY billing_patient ({', '.join(names)}) FROM STDIN", io.StringIO("\n".join(lines) + "\n")
            )


def check_seeded_rows_open(tenant: Any, rows: int) -> None:
    """The seeded ciphertexts are real: a few rows read back through the ORM."""
    from billing.models import Patient
    from portal.tenancy.context import tenant_scope

    with tenant_scope(tenant):
        for patient in Patient.objects.order_by("pk")[: min(rows, 3)]:
            n = int(patient.account_number[2:])
            assert patient.first_name == f"Firstname{n}" and patient.date_of_birth == patient_values(n)["date_of_birth"]


def compact(connection: Any, table: str) -> None:
    # Same starting point for every timed step: no dead rows, packed pages, fresh statistics.
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (FULL, ANALYZE) {table}")
        cursor.execute("CHECKPOINT")


def timed_update(connection: Any, table: str, assignments: str, tenant_id: int) -> float:
    with connection.cursor() as cursor:
        start = time.perf_counter()
        cursor.execute(f"UPDATE {table} SET {assignments} WHERE tenant_id = %s", [tenant_id])  # noqa: S608
        return time.perf_counter() - start


def raw_update_same_table(connection: Any, tenant_id: int) -> float:
    compact(connection, "billing_patient")
    seconds = timed_update(connection, "billing_patient", SCRAMBLE, tenant_id)
    timed_update(connection, "billing_patient", UNSCRAMBLE, tenant_id)  # the rotation needs the real ciphertexts
    return seconds


def raw_update_bare_copy(connection: Any, tenant_id: int) -> float:
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_patient_copy AS SELECT * FROM billing_patient")
    seconds = timed_update(connection, "bench_patient_copy", SCRAMBLE, tenant_id)
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE bench_patient_copy")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the rotation's own")
    parser.add_argument("--workers", type=int, default=None, help="default: the rotation's own")
    parser.add_argument(
        "--keep-db",
        action="store_true",
        help="keep the database (and its patients) for the next run with the same --rows; "
        "needs SETTLE_MASTER_KEY set, so the next run can open them",
    )
    parser.add_argument(
        "--rotation-only",
        action="store_true",
        help="skip both raw UPDATE baselines (each costs two full-table UPDATEs): rotation figures only",
    )
    args = parser.parse_args()
    if args.keep_db and not MASTER_KEY_GIVEN:
        raise SystemExit("--keep-db needs SETTLE_MASTER_KEY in the environment (base64 of 32 bytes)")
    connection = setup(f"rotation_{args.rows}", keepdb=args.keep_db)
    old_name = connection.settings_dict["NAME"]
    if connection.vendor != "postgresql":
        raise SystemExit("set DATABASE_URL=postgres://... (the baseline is PostgreSQL's own UPDATE)")
    try:
        from django.test import override_settings

        from portal.models import Tenant
        from portal.services import tenant_create
        from portal.tenancy.context import tenant_scope
        from security.crypto.models import DataKey
        from security.crypto.rotation import DEFAULT_BATCH_SIZE, data_key_rotate, rows_using
        from security.crypto.rotation_run import worker_count

        batch_size = args.batch_size or DEFAULT_BATCH_SIZE
        tenant = Tenant.objects.filter(slug="bench").first()
        if tenant is None or _patient_count(connection, tenant.pk) != args.rows:
            if tenant is not None:
                raise SystemExit("the kept database holds a half-seeded table: run once without --keep-db")
            tenant = tenant_create(slug="bench", name="Bench Clinic")
            start = time.perf_counter()
            # The active key version is looked up once, not per value (the test settings say 0 s).
            with tenant_scope(tenant), override_settings(SETTLE_ACTIVE_KEY_CACHE_SECONDS=300):
                seed_patients(connection, tenant, args.rows)
            print(f"seeded {args.rows:,} patients in {time.perf_counter() - start:.1f} s (sealed, COPY)")
        else:
            print(f"reusing {args.rows:,} seeded patients (--keep-db)")
        check_seeded_rows_open(tenant, args.rows)
        with tenant_scope(tenant):
            from_version = DataKey.objects.get(purpose="phi", state="active").version

        raw_seconds = bare_seconds = None
        if not args.rotation_only:
            raw_seconds = raw_update_same_table(connection, tenant.pk)
            bare_seconds = raw_update_bare_copy(connection, tenant.pk)
            check_seeded_rows_open(tenant, args.rows)  # put back intact
        compact(connection, "billing_patient")

        rss_before = peak_rss_mb()
        start, cpu_start = time.perf_counter(), time.process_time()
        with override_settings(SETTLE_ACTIVE_KEY_CACHE_SECONDS=1):
            rotation = data_key_rotate(tenant=tenant, purpose="phi", batch_size=batch_size, workers=args.workers)
        rotation_seconds = time.perf_counter() - start
        rotation_cpu = time.process_time() - cpu_start
        rss_after = peak_rss_mb()
        with tenant_scope(tenant):
            assert rows_using(tenant=tenant, purpose="phi", versions=[from_version]) == 0
        check_seeded_rows_open(tenant, args.rows)

        rows = args.rows
        if raw_seconds is not None and bare_seconds is not None:
            print(f"raw UPDATE, same table (7 columns): {rows / raw_seconds:>10,.0f} rows/s ({raw_seconds:.2f} s)")
            print(f"raw UPDATE, bare copy (old baseline): {rows / bare_seconds:>8,.0f} rows/s ({bare_seconds:.2f} s)")
        print(
            f"rotation (open+re-seal):            {rows / rotation_seconds:>10,.0f} rows/s ({rotation_seconds:.2f} s, "
            f"{rotation.rows_done:,} rows, batches of {batch_size}, workers {worker_count(args.workers)})"
        )
        print(
            f"rotation CPU in this process (all threads): {rotation_cpu:.1f} s ({rotation_cpu / rows * 1e6:.0f} us/row)"
        )
        if raw_seconds is not None and bare_seconds is not None:
            print(f"ratio rotation/raw same table: {raw_seconds / rotation_seconds:.2f} (target >= 0.5)")
            print(f"ratio rotation/raw bare copy:  {bare_seconds / rotation_seconds:.2f}")
        print(f"peak RSS: {rss_before:.1f} MB before rotation, {rss_after:.1f} MB after")
    finally:
        if args.keep_db:
            connection.close()
        else:
            teardown(connection, old_name)


if __name__ == "__main__":
    main()
