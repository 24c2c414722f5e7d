"""A 500-row staff patient list: encrypted Patient rows against the same rows in clear.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/crypto_patient_list.py [--rows 500]

Both sides load `rows` patients of one clinic through the ORM and read what
the staff list page shows (templates/billing/staff/patients.html: name with a
link to the ledger, date of birth, account number, phone). The plaintext side
is a model with the same columns as plain CharField/DateField, in a table
created for the benchmark. Keys are warm (a running process).

The encrypted side is measured two ways:
- "listing": what the page does now, read through Patient.listing, the list
  columns sealed as one value (one decryption per row);
- "fields": what it did before, each column its own ciphertext (five per row).
The rendered rows are the page's table rows (same tags, same `{% url %}`
link, same date filter), one template for every contender: `row` is
`patient.listing` on the "listing" side and the patient itself on the
"fields" side and in clear. The script checks that all three render the same
table (apart from the links' public ids).

"listing, page columns" is the listing read from rows loaded as the page
loads them: only the ids and the projection (patient_search.LIST_COLUMNS),
not the six other ciphertexts and five blind indexes.

The contenders run in turn, round after round (crypto_support.interleaved),
so a change of machine load falls on all of them; wall time and this
process's CPU time are printed (the CPU figure leaves out PostgreSQL's own
work: the encrypted rows are wider, so wall time includes that).
Target: encrypted <= 1.5x plaintext.
"""

from __future__ import annotations

import argparse
import datetime
import re
from collections.abc import Callable
from typing import Any

from crypto_support import interleaved, setup, teardown

# The rows of templates/billing/staff/patients.html's table, for any object `row` with the list columns.
ROWS_TEMPLATE = (
    "<table>{% for patient in patients %}{% with row=patient.ROW %}<tr>"
    "<td><a href=\"{% url 'staff:patient-ledger' patient_id=patient.public_id %}\">"
    "{{ row.last_name }}, {{ row.first_name }}</a></td>"
    "<td>{{ row.date_of_birth|date:'m/d/Y' }}</td><td>{{ row.account_number }}</td>"
    "<td>{{ row.phone }}</td></tr>{% endwith %}{% endfor %}</table>"
)
COLUMNS = ("last_name", "first_name", "date_of_birth", "account_number", "phone")


LABELS = {
    "read_fields": "encrypted, 5 fields:   ",
    "read_listing": "encrypted, listing:    ",
    "render_fields": "encrypted, 5 fields:   ",
    "render_listing": "encrypted, listing:    ",
    "render_page": "listing, page columns: ",
}


def _without_links(html: str) -> str:
    # The two tables' rows have different public ids, so different ledger links.
    return re.sub(r'href="[^"]*"', "", html)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--statistic", choices=("median", "min"), default="median")
    parser.add_argument(
        "--plain-links",
        action="store_true",
        help="write the ledger link as text instead of {% url %} (cheaper rows: a harder ratio, as before this bench change)",
    )
    args = parser.parse_args()
    rows_template = ROWS_TEMPLATE
    if args.plain_links:
        rows_template = rows_template.replace(
            "{% url 'staff:patient-ledger' patient_id=patient.public_id %}", "/patients/{{ patient.public_id }}/"
        )
    connection = setup("patient_list")
    old_name = connection.settings_dict["NAME"]
    try:
        import uuid

        from django.db import models
        from django.template import engines

        from billing.models import Patient
        from billing.services.patient_search import LIST_COLUMNS
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

            def loaded(model: type[models.Model], *, page_columns: bool = False) -> list[Any]:
                queryset = model.objects.order_by("id")  # type: ignore[attr-defined]
                if page_columns:  # what the staff list page loads (billing.services.patient_search)
                    queryset = queryset.only(*LIST_COLUMNS)
                rows = list(queryset[: args.rows])
                assert len(rows) == args.rows
                return rows

            def read_plain() -> None:
                [tuple(getattr(p, name) for name in COLUMNS) for p in loaded(PlainPatient)]

            def read_fields() -> None:
                [tuple(getattr(p, name) for name in COLUMNS) for p in loaded(Patient)]

            def read_listing() -> None:
                [tuple(p.listing[name] for name in COLUMNS) for p in loaded(Patient)]

            django_engine = engines["django"]
            templates = {
                "plain": django_engine.from_string(rows_template.replace("patient.ROW", "patient")),
                "fields": django_engine.from_string(rows_template.replace("patient.ROW", "patient")),
                "listing": django_engine.from_string(rows_template.replace("patient.ROW", "patient.listing")),
            }

            def rendered(model: type[models.Model], template: str, *, page_columns: bool = False) -> None:
                patients = loaded(model, page_columns=page_columns)
                assert len(templates[template].render({"patients": patients})) > args.rows

            # Same output from every path (the benchmark compares like with like).
            outputs = {
                name: templates[name].render({"patients": loaded(PlainPatient if name == "plain" else Patient)})
                for name in templates
            }
            assert outputs["plain"].count("<tr>") == args.rows
            assert outputs["fields"] == outputs["listing"]
            page_output = templates["listing"].render({"patients": loaded(Patient, page_columns=True)})
            assert page_output == outputs["listing"]
            assert _without_links(outputs["plain"]) == _without_links(outputs["listing"])
            contenders: dict[str, Callable[[], None]] = {
                "read_plain": read_plain,
                "read_fields": read_fields,
                "read_listing": read_listing,
                "render_plain": lambda: rendered(PlainPatient, "plain"),
                "render_fields": lambda: rendered(Patient, "fields"),
                "render_listing": lambda: rendered(Patient, "listing"),
                "render_page": lambda: rendered(Patient, "listing", page_columns=True),
            }
            for run in contenders.values():
                run()  # warm up (keys into the cache)
            timings = interleaved(args.repeats, contenders, statistic=args.statistic)

        print(
            f"rows: {args.rows}; database: {connection.vendor}; {args.statistic} of {args.repeats} interleaved runs"
            f"; links: {'text' if args.plain_links else '{% url %}'}"
        )
        for title, plain_name, enc_names in (
            ("query + read the 5 list columns per row:", "read_plain", ("read_fields", "read_listing")),
            (
                "query + render the list rows (templates/billing/staff/patients.html's table):",
                "render_plain",
                ("render_fields", "render_listing", "render_page"),
            ),
        ):
            plain = timings[plain_name]
            print(title)
            print(f"  plaintext:              {plain.wall * 1000:8.2f} ms wall  {plain.cpu * 1000:8.2f} ms CPU")
            for name in enc_names:
                enc = timings[name]
                label = LABELS[name]
                print(
                    f"  {label}{enc.wall * 1000:8.2f} ms wall  {enc.cpu * 1000:8.2f} ms CPU"
                    f"  ratio {enc.wall / plain.wall:.2f}x wall, {enc.cpu / plain.cpu:.2f}x CPU"
                )
        print("target: encrypted (listing, rendered) <= 1.5x plaintext")
    finally:
        teardown(connection, old_name)


if __name__ == "__main__":
    main()
