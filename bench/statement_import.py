"""Statement import of a large file: the product's import against bulk_create into plaintext tables.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/statement_import.py [--rows 100000]

The file is generated in memory: `rows` statements of `rows / 2` patients
(two statements each), every optional column the records keep (email,
phone, service_summary) filled, as docs/statement-import.md describes.

- "import": what `manage.py import_statements` does: the whole-file checks
  (billing.services.statement_import_file.import_file_open), then
  statement_import_run: rows streamed and checked one by one, applied in
  batches of 1,000, each batch looking its patients and statements up by
  blind index and writing new patients, statements and charge entries with
  bulk_create through the encrypted fields, the job's counts per batch and
  the audit event at the end.
- "baseline": the same rows, parsed by csv.reader with the same types
  (dates, amounts), looked up per batch of 1,000 by plain indexed columns
  and bulk_created into plaintext tables of the same shape (patients,
  statements, ledger entries; tables created for the benchmark).

Then "re-import": the same file again through the product (every row
unchanged: the idempotent path). Peak RSS is this process's maximum
resident set (ru_maxrss) after the import, the generated file included;
RSS before is after generating the file. Target: import >= 0.3x the
baseline's rows/s, peak RSS < 300 MB.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import time
from decimal import Decimal

from crypto_support import peak_rss_mb, setup, teardown

HEADER = (
    "statement_number,account_number,first_name,last_name,date_of_birth,statement_date,due_date,amount_due,"
    "email,phone,service_summary"
)


def example_file(rows: int) -> bytes:
    out = io.StringIO()
    out.write(HEADER + "\n")
    for n in range(rows):
        p = n // 2
        birth = datetime.date(1940, 1, 1) + datetime.timedelta(days=(p * 37) % 25_000)
        out.write(
            f"ST-{n:07d},ACC-{p:07d},Firstname{p},Lastname{p},{birth.isoformat()},2026-11-02,2026-12-02,"
            f"{10 + n % 990}.{n % 100:02d},patient{p}@example.com,+1 202 555 {p % 10000:04d},"
            f"Office visit {n % 7}\n"
        )
    return out.getvalue().encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    connection = setup("statement_import")
    old_name = connection.settings_dict["NAME"]
    try:
        import uuid

        from django.db import models

        from billing.services.statement_import import BATCH_SIZE, import_job_create, statement_import_run
        from billing.services.statement_import_file import import_file_open
        from portal.money import CURRENCY_CHOICES
        from portal.services import tenant_create
        from portal.tenancy.context import tenant_scope
        from portal.tenancy.models import TenantOwnedModel

        class PlainPatient(TenantOwnedModel):
            public_id = models.UUIDField(default=uuid.uuid4, unique=True)
            account_number = models.CharField(max_length=40, db_index=True)
            first_name = models.CharField(max_length=100)
            last_name = models.CharField(max_length=100)
            date_of_birth = models.DateField()
            email = models.CharField(max_length=254, blank=True)
            phone = models.CharField(max_length=32, blank=True)
            created_at = models.DateTimeField(auto_now_add=True)

            class Meta:
                app_label = "bench"
                db_table = "bench_plain_patient"

        class PlainStatement(TenantOwnedModel):
            public_id = models.UUIDField(default=uuid.uuid4, unique=True)
            patient = models.ForeignKey(PlainPatient, on_delete=models.PROTECT)
            number = models.CharField(max_length=32, db_index=True)
            statement_date = models.DateField()
            due_date = models.DateField()
            amount_due_minor = models.PositiveIntegerField()
            currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
            summary = models.TextField(blank=True)
            created_at = models.DateTimeField(auto_now_add=True)

            class Meta:
                app_label = "bench"
                db_table = "bench_plain_statement"

        class PlainEntry(TenantOwnedModel):
            public_id = models.UUIDField(default=uuid.uuid4, unique=True)
            patient = models.ForeignKey(PlainPatient, on_delete=models.PROTECT)
            statement = models.ForeignKey(PlainStatement, on_delete=models.PROTECT)
            kind = models.CharField(max_length=24)
            amount_minor = models.BigIntegerField()
            currency = models.CharField(max_length=3)
            memo = models.CharField(max_length=120, blank=True)
            created_at = models.DateTimeField(auto_now_add=True, db_index=True)

            class Meta:
                app_label = "bench"
                db_table = "bench_plain_entry"

        with connection.schema_editor() as editor:
            for model in (PlainPatient, PlainStatement, PlainEntry):
                editor.create_model(model)

        tenant = tenant_create(slug="bench", name="Bench Clinic")
        data = example_file(args.rows)
        rss_before = peak_rss_mb()

        def product_import() -> object:
            checked = import_file_open(data)
            with tenant_scope(tenant):
                job = import_job_create(
                    tenant=tenant, actor=None, actor_role="command", file=checked, keep_upload=False
                )
                return statement_import_run(job=job, file=checked)

        start = time.perf_counter()
        job = product_import()
        imported = time.perf_counter() - start
        rss_after = peak_rss_mb()
        assert job.accepted == args.rows and job.statements_created == args.rows, job  # type: ignore[attr-defined]

        def baseline() -> None:
            reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
            next(reader)
            batch: list[list[str]] = []
            for fields in reader:
                batch.append(fields)
                if len(batch) == BATCH_SIZE:
                    plain_batch(batch)
                    batch = []
            plain_batch(batch)

        def plain_batch(batch: list[list[str]]) -> None:
            from django.db import transaction

            with transaction.atomic():
                patients = {
                    p.account_number: p for p in PlainPatient.objects.filter(account_number__in=[f[1] for f in batch])
                }
                known = set(
                    PlainStatement.objects.filter(number__in=[f[0] for f in batch]).values_list("number", flat=True)
                )
                new_patients: dict[str, PlainPatient] = {}
                statements = []
                for f in batch:
                    if f[0] in known:
                        continue
                    patient = patients.get(f[1]) or new_patients.get(f[1])
                    if patient is None:
                        patient = new_patients[f[1]] = PlainPatient(
                            tenant=tenant,
                            account_number=f[1],
                            first_name=f[2],
                            last_name=f[3],
                            date_of_birth=datetime.date.fromisoformat(f[4]),
                            email=f[8],
                            phone=f[9],
                        )
                    statements.append(
                        PlainStatement(
                            tenant=tenant,
                            patient=patient,
                            number=f[0].upper(),
                            statement_date=datetime.date.fromisoformat(f[5]),
                            due_date=datetime.date.fromisoformat(f[6]),
                            amount_due_minor=int(Decimal(f[7]) * 100),
                            currency="USD",
                            summary=f[10],
                        )
                    )
                PlainPatient.objects.bulk_create(list(new_patients.values()))
                PlainStatement.objects.bulk_create(statements)
                PlainEntry.objects.bulk_create(
                    PlainEntry(
                        tenant=tenant,
                        patient=s.patient,
                        statement=s,
                        kind="charge",
                        amount_minor=s.amount_due_minor,
                        currency="USD",
                        memo="Statement issued",
                    )
                    for s in statements
                )

        with tenant_scope(tenant):
            start = time.perf_counter()
            baseline()
            plain = time.perf_counter() - start
            assert PlainStatement.objects.count() == args.rows

        start = time.perf_counter()
        again = product_import()
        reimported = time.perf_counter() - start
        assert again.unchanged == args.rows, again  # type: ignore[attr-defined]

        print(f"rows: {args.rows} ({len(data) / 1024 / 1024:.1f} MB file); database: {connection.vendor}")
        print(f"  baseline (plaintext bulk_create): {plain:7.1f} s  {args.rows / plain:8.0f} rows/s")
        print(
            f"  import (encrypted, checked):      {imported:7.1f} s  {args.rows / imported:8.0f} rows/s"
            f"  ratio {plain / imported:.2f}x"
        )
        print(f"  re-import (all unchanged):        {reimported:7.1f} s  {args.rows / reimported:8.0f} rows/s")
        print(f"  peak RSS: {rss_after:.0f} MB after the import ({rss_before:.0f} MB before it, file generated)")
        print("target: import >= 0.3x the baseline's rows/s; peak RSS < 300 MB")
    finally:
        teardown(connection, old_name)


if __name__ == "__main__":
    main()
