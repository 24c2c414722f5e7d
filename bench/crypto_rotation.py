"""Rotation throughput on PostgreSQL: re-encrypting patients against a raw SQL UPDATE.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/crypto_rotation.py [--rows 100000]

Seeds `rows` patients of one clinic (6 encrypted fields, 5 blind indexes each),
then times `data_key_rotate(purpose="phi")` (new key version; every row
decrypted and re-sealed in batches of 500, progress stored per batch; old key
retired) and, as the baseline, one raw SQL UPDATE that rewrites the same six
columns of every row with same-sized values. Peak RSS is read before and after
the rotation: flat means memory does not grow with the table.
Targets (issue 4): >= 0.5x the raw rate, flat memory.
"""

from __future__ import annotations

import argparse
import datetime
import time

from crypto_support import peak_rss_mb, setup, teardown


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    connection = setup("rotation")
    old_name = connection.settings_dict["NAME"]
    if connection.vendor != "postgresql":
        raise SystemExit("set DATABASE_URL=postgres://... (the baseline is PostgreSQL's own UPDATE)")
    try:
        from django.test import override_settings

        from billing.models import Patient
        from portal.services import tenant_create
        from portal.tenancy.context import tenant_scope
        from security.crypto.rotation import data_key_rotate, rows_using

        tenant = tenant_create(slug="bench", name="Bench Clinic")
        start = time.perf_counter()
        with tenant_scope(tenant):
            for offset in range(0, args.rows, 5000):
                Patient.objects.bulk_create(
                    [
                        Patient(
                            tenant=tenant,
                            account_number=f"R-{n:07d}",
                            first_name=f"Firstname{n}",
                            last_name=f"Lastname{n}",
                            date_of_birth=datetime.date(1950, 1, 1) + datetime.timedelta(days=n % 20000),
                            email=f"patient{n}@example.com",
                            phone=f"+1202555{n % 10000:04d}",
                        )
                        for n in range(offset, min(offset + 5000, args.rows))
                    ],
                    batch_size=1000,
                )
        print(f"seeded {args.rows:,} patients in {time.perf_counter() - start:.1f} s")

        # Baseline on a copy of the table (same rows, same sizes): the rotation
        # below needs the real ciphertexts intact.
        columns = ["account_number", "first_name", "last_name", "date_of_birth", "email", "phone"]
        assignments = ", ".join(f"{c} = translate({c}, 'ABCabc', 'BCAbca')" for c in columns)
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE bench_patient_copy AS SELECT * FROM billing_patient")
            start = time.perf_counter()
            cursor.execute(f"UPDATE bench_patient_copy SET {assignments} WHERE tenant_id = %s", [tenant.pk])  # noqa: S608
            raw_seconds = time.perf_counter() - start

        rss_before = peak_rss_mb()
        start = time.perf_counter()
        with override_settings(SETTLE_ACTIVE_KEY_CACHE_SECONDS=1):
            rotation = data_key_rotate(tenant=tenant, purpose="phi", batch_size=args.batch_size)
        rotation_seconds = time.perf_counter() - start
        rss_after = peak_rss_mb()
        with tenant_scope(tenant):
            assert rows_using(tenant=tenant, purpose="phi", versions=[1]) == 0

        print(f"raw SQL UPDATE (6 columns):  {args.rows / raw_seconds:>10,.0f} rows/s ({raw_seconds:.2f} s)")
        print(
            f"rotation (decrypt+re-seal):  {args.rows / rotation_seconds:>10,.0f} rows/s ({rotation_seconds:.2f} s, "
            f"{rotation.rows_done:,} rows, batches of {args.batch_size})"
        )
        print(f"ratio rotation/raw: {raw_seconds / rotation_seconds:.2f} (target >= 0.5)")
        print(f"peak RSS: {rss_before:.1f} MB before rotation, {rss_after:.1f} MB after")
    finally:
        teardown(connection, old_name)


if __name__ == "__main__":
    main()
