"""A 500-row staff patient list: encrypted Patient rows against the same rows in clear.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/crypto_patient_list.py [--rows 500]

Both sides load `rows` patients of one clinic through the ORM and read what a
list page shows (name, date of birth, account number, phone). The plaintext
side is a model with the same columns as plain CharField/DateField, in a
table created for the benchmark. Keys are warm (a running process).
The four measurements run in turn, round after round (crypto_support.interleaved),
so a change of machine load falls on all of them; wall time and this
process's CPU time are printed (the CPU figure leaves out PostgreSQL's own
work, which is the same query on both sides).
Target: encrypted <= 1.5x plaintext.
"""

from __future__ import annotations

import argparse
import datetime

from crypto_support import interleaved, setup, teardown


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--statistic", choices=("median", "min"), default="median")
    args = parser.parse_args()
    connection = setup("patient_list")
    old_name = connection.settings_dict["NAME"]
    try:
        import uuid

        from django.db import models

        from billing.models import Patient
        from portal.services import tenant_create
        from portal.tenancy.context import tenant_scope
        from portal.tenancy.models import TenantOwnedModel

        class PlainPatient(TenantOwnedModel):
            public_id = models.UUIDField(default=uuid.uuid4, unique=True)
            account_number = models.CharField(max_length=40)
            first_name = models.CharField(max_length=100)
            last_name = models.CharField(max_length=100)
            date_of_birth = models.DateField()
            email = models.CharField(max_length=254, blank=True)
            phone = models.CharField(max_length=32, blank=True)
            created_at = models.DateTimeField(auto_now_add=True)

            class Meta:
                app_label = "bench"
                db_table = "bench_plain_patient"

        with connection.schema_editor() as editor:
            editor.create_model(PlainPatient)

        tenant = tenant_create(slug="bench", name="Bench Clinic")
        with tenant_scope(tenant):
            common = [
                {
                    "account_number": f"B-{n:05d}",
                    "first_name": f"Firstname{n}",
                    "last_name": f"Lastname{n}",
                    "date_of_birth": datetime.date(1950, 1, 1) + datetime.timedelta(days=n * 17),
                    "email": f"patient{n}@example.com",
                    "phone": f"+1202555{n % 10000:04d}",
                }
                for n in range(args.rows)
            ]
            Patient.objects.bulk_create([Patient(tenant=tenant, **row) for row in common], batch_size=500)
            PlainPatient.objects.bulk_create([PlainPatient(tenant=tenant, **row) for row in common], batch_size=500)

            def page(model: type[models.Model]) -> None:
                rows = list(model.objects.order_by("id")[: args.rows])  # type: ignore[attr-defined]
                shown = [(f"{p.first_name} {p.last_name}", p.date_of_birth, p.account_number, p.phone) for p in rows]
                assert len(shown) == args.rows

            from django.template import engines

            template = engines["django"].from_string(
                "<table>{% for p in patients %}<tr><td>{{ p.first_name }} {{ p.last_name }}</td>"
                "<td>{{ p.date_of_birth|date:'M j, Y' }}</td><td>{{ p.account_number }}</td>"
                "<td>{{ p.phone }}</td></tr>{% endfor %}</table>"
            )

            def rendered(model: type[models.Model]) -> None:
                rows = list(model.objects.order_by("id")[: args.rows])  # type: ignore[attr-defined]
                assert len(template.render({"patients": rows})) > args.rows

            for model in (Patient, PlainPatient):
                page(model)  # warm up (keys into the cache)
                rendered(model)
            timings = interleaved(
                args.repeats,
                {
                    "read_plain": lambda: page(PlainPatient),
                    "read_enc": lambda: page(Patient),
                    "render_plain": lambda: rendered(PlainPatient),
                    "render_enc": lambda: rendered(Patient),
                },
                statistic=args.statistic,
            )

        print(f"rows: {args.rows}; database: {connection.vendor}; {args.statistic} of {args.repeats} interleaved runs")
        values = args.rows * 5
        for title, plain, enc in (
            ("query + read 5 fields per row:", timings["read_plain"], timings["read_enc"]),
            (
                "query + render the rows in a Django template (what a list page does):",
                timings["render_plain"],
                timings["render_enc"],
            ),
        ):
            print(title)
            print(f"  plaintext: {plain.wall * 1000:8.2f} ms wall  {plain.cpu * 1000:8.2f} ms CPU")
            print(
                f"  encrypted: {enc.wall * 1000:8.2f} ms wall  {enc.cpu * 1000:8.2f} ms CPU"
                f"  ({(enc.cpu - plain.cpu) / values * 1e6:.1f} us CPU per decrypted field)"
            )
            print(
                f"  ratio encrypted/plaintext: {enc.wall / plain.wall:.2f}x wall, "
                f"{enc.cpu / plain.cpu:.2f}x CPU (target <= 1.5x)"
            )
    finally:
        teardown(connection, old_name)


if __name__ == "__main__":
    main()
