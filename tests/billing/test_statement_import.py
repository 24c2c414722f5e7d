"""Statement import: bad rows reported, bad files refused whole, re-imports idempotent,
amount changes adjusted in the ledger, the command and the console pages.

Personas (tests/conftest.py): alpha's billing manager imports; its front desk may not.
The alpha clinic already has patient ALPHA-0001 with statement ALPHA-1001.
"""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit.models import AuditEvent
from billing.import_models import ImportJob, ImportStatus
from billing.models import EntryKind, LedgerEntry, Patient, Statement
from billing.services import statement_import, statement_import_file
from billing.services.ledger import statement_balance
from billing.services.statement_import import IMPORT_ADJUSTMENT_MEMO, import_job_create, statement_import_run
from billing.services.statement_import_file import ImportRefused, import_file_open
from portal.tenancy.context import tenant_scope
from security.crypto.fields import blind_index_filter
from security.models import Role
from tests.conftest import Clinic

pytestmark = pytest.mark.django_db

BILLING = Role.BILLING_MANAGER.value
HEADER = "statement_number,account_number,first_name,last_name,date_of_birth,statement_date,due_date,amount_due"
GOOD = [
    "ST-5001,ACC-1,Nora,Fakehurst,1979-05-21,2026-11-02,2026-12-02,186.40",
    "ST-5002,ACC-2,Omar,Placeholder,1991-09-03,2026-11-02,2026-12-02,75.00",
    "ST-5003,ACC-2,Omar,Placeholder,1991-09-03,2026-11-09,2026-12-09,42.10",
]
EXAMPLE = Path(__file__).resolve().parents[2] / "billing" / "demo_data" / "statements-example.csv"


def csv_bytes(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def run(clinic: Clinic, data: bytes) -> ImportJob:
    checked = import_file_open(data)
    with tenant_scope(clinic.tenant):
        job = import_job_create(tenant=clinic.tenant, actor=None, actor_role="command", file=checked, keep_upload=False)
        return statement_import_run(job=job, file=checked)


def counts(clinic: Clinic) -> tuple[int, int, int]:
    with tenant_scope(clinic.tenant):
        return Patient.objects.count(), Statement.objects.count(), LedgerEntry.objects.count()


def report_rows(job: ImportJob) -> list[list[str]]:
    return list(csv.reader(io.StringIO(job.report)))


def statement(clinic: Clinic, number: str) -> Statement:
    with tenant_scope(clinic.tenant):
        return Statement.objects.get(
            blind_index_filter(tenant_id=clinic.tenant.pk, model=Statement, field_name="number_index", values=[number])
        )


# --- rows ------------------------------------------------------------------------------------


BAD_ROWS = {
    # line number in the file -> (row, the reasons it must give)
    3: ("ST-6002,ACC-9,Ann,Bad,1980-02-30,2026-11-02,2026-12-02,10.00", ["date_of_birth is not a real date"]),
    4: (
        "ST-6003,ACC-9,,Bad,01/02/1980,2026-13-01,2026-12-02,-5",
        [
            "first_name is missing",
            "date_of_birth is not a date in YYYY-MM-DD form",
            "statement_date is not a real date",
            "amount_due is not an amount such as 186.40",
        ],
    ),
    5: (
        "ST-6004,ACC-9,Ann,Bad,2099-01-01,2026-11-02,2026-11-01,0.00",
        [
            "date_of_birth is in the future or before 1900",
            "due_date is before statement_date",
            "amount_due must be more than zero",
        ],
    ),
    6: ("ST-6005,ACC-9,Ann,Bad,1980-01-01,2026-11-02,2026-12-02,12.345", ["amount_due is not an amount"]),
    7: ("ST-6006,ACC-9,Ann,Bad,1980-01-01,2026-11-02,2026-12-02", ["the row has 7 fields, the header 8"]),
    8: (
        ",,Ann,Bad,1980-01-01,,2026-12-02,",
        [
            "statement_number is missing",
            "account_number is missing",
            "statement_date is missing",
            "amount_due is missing",
        ],
    ),
    9: (
        "ST-6001,ACC-8,Other,Person,1980-01-01,2026-11-02,2026-12-02,10.00",
        ["statement_number already appears on line 2"],
    ),
    10: (
        "ST-6007,ALPHA-0001,Someone,Else,1970-01-01,2026-11-02,2026-12-02,10.00",
        [
            "account_number belongs to a patient with another name or date of birth",
        ],
    ),
    11: (
        "ALPHA-1001,ACC-7,Ann,Other,1980-01-01,2026-11-02,2026-12-02,10.00",
        [
            "statement_number belongs to another patient's statement",
        ],
    ),
    12: ("ST-6008,ACC-6,Ann,Bad,1980-01-01,2026-11-02,2026-12-02,10.00,extra", ["the row has 9 fields, the header 8"]),
    13: (
        "ST-6009," + "X" * 41 + ",Ann,Bad,1980-01-01,2026-11-02,2026-12-02,10.00",
        [
            "account_number is longer than 40 characters",
        ],
    ),
    14: ("ST-60/10,ACC-5,Ann,Bad,1980-01-01,2026-11-02,2026-12-02,10.00,", ["the row has 9 fields"]),
    15: ("---,ACC-5,Ann,Bad,1980-01-01,2026-11-02,2026-12-02,10.00", ["statement_number has no letters or digits"]),
}


def test_every_bad_row_is_reported_with_its_line_and_every_reason(clinic_a: Clinic) -> None:
    good = "ST-6001,ACC-1,Nora,Fakehurst,1979-05-21,2026-11-02,2026-12-02,186.40"
    data = csv_bytes(
        good, *(row for row, _ in BAD_ROWS.values()), "ST-6011,ACC-1,nora,FAKEHURST,1979-05-21,2026-11-03,2026-12-03,1"
    )
    before = counts(clinic_a)
    job = run(clinic_a, data)
    assert (job.accepted, job.rejected, job.rows_done) == (2, len(BAD_ROWS), len(BAD_ROWS) + 2)
    rows = report_rows(job)
    assert rows[0] == ["line", "reasons", *HEADER.split(",")]
    assert [int(row[0]) for row in rows[1:]] == sorted(BAD_ROWS), "in file order"
    by_line = {int(row[0]): row for row in rows[1:]}
    assert sorted(by_line) == sorted(BAD_ROWS)
    for line, (row, reasons) in BAD_ROWS.items():
        for reason in reasons:
            assert reason in by_line[line][1], (line, by_line[line][1])
        assert len(by_line[line][1].split("; ")) == len(reasons), by_line[line][1]
        assert by_line[line][2:] == next(csv.reader([row])), "the report repeats the row as given"
    # Only the two good rows were applied: one new patient (matched again case-blind), two statements.
    assert counts(clinic_a) == (before[0] + 1, before[1] + 2, before[2] + 2)
    assert job.patients_created == 1 and job.statements_created == 2


def test_a_multi_line_quoted_field_keeps_the_line_numbers_right(clinic_a: Clinic) -> None:
    header = HEADER + ",service_summary"
    data = csv_bytes(
        'ST-7001,ACC-1,Nora,Fakehurst,1979-05-21,2026-11-02,2026-12-02,10.00,"two\nlines"',
        "ST-7002,ACC-1,Nora,Fakehurst,1979-05-21,2026-11-02,2026-12-02,nope,",
        header=header,
    )
    job = run(clinic_a, data)
    assert [row[0] for row in report_rows(job)[1:]] == ["4"]
    with tenant_scope(clinic_a.tenant):
        assert statement(clinic_a, "ST-7001").summary == "two\nlines"


def test_unknown_and_unstored_columns_are_reported_as_ignored(clinic_a: Clinic) -> None:
    job = run(clinic_a, EXAMPLE.read_bytes())
    assert job.ignored_columns == ["address_line1", "city", "state", "postal_code", "language"]
    header = HEADER + ",favourite_colour,email,phone"
    job = run(clinic_a, csv_bytes(GOOD[0] + ",blue,nora@example.com,+1 202 555 0131", header=header))
    assert job.ignored_columns == ["favourite_colour"]
    with tenant_scope(clinic_a.tenant):
        patient = statement(clinic_a, "ST-5001").patient
        assert (patient.email, patient.phone) == ("nora@example.com", "+1 202 555 0131")


def test_the_example_file_imports_with_its_bad_rows_reported(clinic_a: Clinic) -> None:
    job = run(clinic_a, EXAMPLE.read_bytes())
    # Line 11's account number is a demo clinic patient's (rejected there); alpha has no such patient.
    assert (job.accepted, job.rejected) == (6, 5)
    lines = [row[0] for row in report_rows(job)[1:]]
    assert lines == ["7", "8", "9", "10", "12"]


# --- files -----------------------------------------------------------------------------------


BAD_FILES = {
    "not_utf8": (HEADER + "\nST-1,A,Jos\xe9,B,1980-01-01,2026-01-01,2026-02-01,1.00\n").encode("latin-1"),
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
    "not_csv": b"This is a letter, not a statement file.\nDear clinic\n",
    "no_commas": b"statements\nST-1\n",
    "missing_column": csv_bytes(GOOD[0].rsplit(",", 1)[0], header=HEADER.rsplit(",", 1)[0]),
    "duplicate_column": csv_bytes(GOOD[0] + ",x", header=HEADER + ",due_date"),
    "empty": b"",
    "header_only": csv_bytes(),
    "broken_quotes": csv_bytes(GOOD[0], 'ST-2,"unterminated,Omar,P,1991-09-03,2026-11-02,2026-12-02,1.00'),
}
MESSAGES = {
    "not_utf8": "not UTF-8",
    "binary": "not UTF-8",
    "not_csv": "Required columns are missing",
    "no_commas": "no commas",
    "missing_column": "Required columns are missing: amount_due.",
    "duplicate_column": "appear more than once: due_date",
    "empty": "empty",
    "header_only": "no statements",
    "broken_quotes": "not valid CSV",
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_a_bad_file_is_refused_whole_with_its_problem_named(clinic_a: Clinic, kind: str) -> None:
    before = counts(clinic_a)
    with pytest.raises(ImportRefused) as refused:
        import_file_open(BAD_FILES[kind])
    assert MESSAGES[kind] in refused.value.message
    assert counts(clinic_a) == before


def test_a_file_over_the_size_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statement_import_file, "MAX_IMPORT_BYTES", 1000)
    with pytest.raises(ImportRefused, match="the limit is 0 MB") as refused:
        import_file_open(csv_bytes(*GOOD * 10))
    assert refused.value.code == "too_large"


def test_a_byte_order_mark_is_accepted(clinic_a: Clinic) -> None:
    job = run(clinic_a, codecs.BOM_UTF8 + csv_bytes(*GOOD).replace(b"\n", b"\r\n"))
    assert (job.accepted, job.rejected) == (3, 0)


# --- idempotency and adjustments ---------------------------------------------------------------


def test_many_values_are_indexed_as_one_by_one(clinic_a: Clinic) -> None:
    from security.crypto.fields import blind_index_values, blind_index_values_many

    values = ["ACC-1", "", "  ACC-1 ", "acc-2"]
    with tenant_scope(clinic_a.tenant):
        one_by_one = [
            blind_index_values(
                tenant_id=clinic_a.tenant.pk, model=Patient, field_name="account_number_index", values=[v]
            )
            for v in values
        ]
        many = blind_index_values_many(
            tenant_id=clinic_a.tenant.pk, model=Patient, field_name="account_number_index", values=[[v] for v in values]
        )
    assert many == one_by_one and many[1] == [] and many[0] == many[2] != many[3]


def test_importing_the_same_file_again_changes_nothing(clinic_a: Clinic) -> None:
    first = run(clinic_a, EXAMPLE.read_bytes())
    after_first = counts(clinic_a)
    second = run(clinic_a, EXAMPLE.read_bytes())
    assert counts(clinic_a) == after_first
    assert (second.statements_created, second.patients_created, second.adjusted) == (0, 0, 0)
    assert second.unchanged == first.accepted == second.accepted
    assert second.rejected == first.rejected


def test_a_new_amount_gets_one_adjusting_entry_and_is_then_unchanged(clinic_a: Clinic) -> None:
    run(clinic_a, csv_bytes(*GOOD))
    original = statement(clinic_a, "ST-5001")
    with tenant_scope(clinic_a.tenant):
        charge = LedgerEntry.objects.get(statement=original)
    changed = GOOD[0].replace("186.40", "150.00").replace("2026-12-02", "2026-12-20")
    job = run(clinic_a, csv_bytes(changed, *GOOD[1:]))
    assert (job.adjusted, job.unchanged, job.statements_created) == (1, 2, 0)
    with tenant_scope(clinic_a.tenant):
        entries = list(LedgerEntry.objects.filter(statement=original).order_by("id"))
        assert entries[0].pk == charge.pk and entries[0].amount_minor == 18_640, "the charge is never edited"
        assert [(e.kind, e.amount_minor, e.memo) for e in entries[1:]] == [
            (EntryKind.ADJUSTMENT, -3_640, IMPORT_ADJUSTMENT_MEMO)
        ]
        assert statement_balance(statement=original).minor_units == 15_000
    assert statement(clinic_a, "ST-5001").due_date.isoformat() == "2026-12-20"
    again = run(clinic_a, csv_bytes(changed))
    assert (again.adjusted, again.unchanged) == (0, 1)
    back_up = run(clinic_a, csv_bytes(GOOD[0].replace("186.40", "200.00")))
    assert back_up.adjusted == 1
    with tenant_scope(clinic_a.tenant):
        assert statement_balance(statement=original).minor_units == 20_000


def test_rows_are_applied_in_batches_and_duplicates_are_found_across_them(
    clinic_a: Clinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statement_import, "BATCH_SIZE", 2)
    rows = [
        f"ST-8{n:03},ACC-{n % 3},Pat,Number{n % 3},1980-01-0{n % 3 + 1},2026-11-02,2026-12-02,{n}.00"
        for n in range(1, 8)
    ]
    job = run(clinic_a, csv_bytes(*rows, rows[0].replace("1.00", "9.00")))
    assert (job.accepted, job.rejected, job.patients_created, job.statements_created) == (7, 1, 3, 7)
    assert report_rows(job)[1][1] == "statement_number already appears on line 2"


def test_new_patients_are_stored_encrypted_and_found_by_account_number(clinic_a: Clinic) -> None:
    run(clinic_a, csv_bytes(*GOOD))
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM billing_patient")
        dump = repr(cursor.fetchall())
        cursor.execute("SELECT * FROM billing_statement")
        dump += repr(cursor.fetchall())
    for clear in ("Fakehurst", "Placeholder", "ACC-2", "1979-05-21", "ST-5002"):
        assert clear not in dump
    with tenant_scope(clinic_a.tenant):
        matches = Patient.objects.filter(
            blind_index_filter(
                tenant_id=clinic_a.tenant.pk, model=Patient, field_name="account_number_index", values=["ACC-2"]
            )
        )
        assert [p.last_name for p in matches] == ["Placeholder"]
        assert matches[0].statements.count() == 2


def test_the_import_is_audited_with_counts_only(clinic_a: Clinic) -> None:
    job = run(clinic_a, EXAMPLE.read_bytes())
    event = AuditEvent.objects.get(action="statements.imported", target_id=str(job.public_id))
    assert event.details == {
        "rows": 11,
        "accepted": 6,
        "rejected": 5,
        "created": 6,
        "patients_created": 5,
        "adjusted": 0,
        "unchanged": 0,
    }
    assert job.status == ImportStatus.DONE and job.upload == ""


# --- the command -------------------------------------------------------------------------------


def test_the_command_imports_prints_rejections_and_exits_zero(clinic_a: Clinic, tmp_path: Path, capsys) -> None:
    call_command("import_statements", "--tenant", "alpha", str(EXAMPLE))
    out = capsys.readouterr()
    assert "11 rows: 6 accepted, 5 rejected; 6 statements created, 5 patients created" in out.out
    assert "line 7: date_of_birth" not in out.out and "line 7: statement_date is not a real date" in out.out
    assert "line 12: the row has 4 fields, the header 16" in out.out
    assert "Columns ignored (not stored): address_line1, city, state, postal_code, language." in out.out
    assert "[##############################] 11/11 rows" in out.err
    call_command("import_statements", "--tenant", "alpha", str(EXAMPLE))
    assert "0 statements created, 0 patients created, 0 adjusted, 6 unchanged" in capsys.readouterr().out


def test_a_dry_run_counts_and_changes_nothing(clinic_a: Clinic, capsys) -> None:
    before = counts(clinic_a)
    call_command("import_statements", "--tenant", "alpha", "--dry-run", str(EXAMPLE))
    assert "Dry run (nothing was changed): 11 rows: 6 accepted, 5 rejected" in capsys.readouterr().out
    assert counts(clinic_a) == before
    with tenant_scope(clinic_a.tenant):
        assert not ImportJob.objects.exists()
    assert not AuditEvent.objects.filter(action="statements.imported").exists()


@pytest.mark.parametrize("kind", ["not_utf8", "missing_column", "empty"])
def test_the_command_exits_non_zero_on_a_refused_file(clinic_a: Clinic, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "statements.csv"
    path.write_bytes(BAD_FILES[kind])
    before = counts(clinic_a)
    with pytest.raises(CommandError, match=f"Refused: .*{MESSAGES[kind][:12]}.*Nothing was imported"):
        call_command("import_statements", "--tenant", "alpha", str(path))
    assert counts(clinic_a) == before
    with pytest.raises(CommandError, match="No clinic has the slug"):
        call_command("import_statements", "--tenant", "nowhere", str(path))
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_statements", "--tenant", "alpha", str(tmp_path / "missing.csv"))
