"""Statement import: apply a checked file in batches, idempotently.

Each batch of rows is one transaction: its patients, statements, ledger
entries and the job's progress commit together, so an interrupted import
leaves whole batches and importing the file again finishes it. What a row
does:

- a new statement number: the statement is issued and its amount charged
  (as billing.services.statements.statement_issue does), to the patient
  with the row's account number, created when the clinic has none;
- a statement number seen before, with the same amount: nothing changes
  (its dates and summary are brought up to the row's if they differ);
- a statement number seen before with a new amount: one `adjustment` ledger
  entry for the difference; entries are never edited.

A row is rejected, with every reason, when a field is wrong, when its
account number belongs to a patient with another name or date of birth,
when its statement number belongs to another patient's statement, or when
the same statement number came earlier in the file.

PHI is written only through the encrypted fields and their blind indexes;
new rows are sealed by bulk_create (the fields' pre_save). Memory stays flat:
rows are read one at a time and applied BATCH_SIZE at a time.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from audit.recorder import audit_record
from billing.import_models import ImportJob, ImportStatus
from billing.models import EntryKind, LedgerEntry, Patient, Statement
from billing.services.statement_import_file import (
    ImportFile,
    ImportRow,
    import_row_parse,
    import_rows,
    import_text_open,
)
from portal.models import Tenant
from portal.tenancy.context import platform_scope, tenant_scope
from security.crypto.fields import blind_index_values_many
from security.crypto.normalize import normalize_text

BATCH_SIZE = 1000
# The memo of an import's adjusting entry: the statement's billed amount is its
# charge plus these (billed_amounts). Not PHI.
IMPORT_ADJUSTMENT_MEMO = "Statement amount changed by import"
ISSUED_MEMO = "Statement issued"

Progress = Callable[[ImportJob], None]


@dataclass
class _Run:
    """What one run has seen: statement numbers by line (duplicates in the file) and the report."""

    job: ImportJob
    file: ImportFile
    first_line_of: dict[str, int] = field(default_factory=dict)
    report: io.StringIO = field(default_factory=io.StringIO)
    writer: Any = None

    def reject(self, line: int, fields: list[str], reasons: list[str]) -> None:
        if self.writer is None:
            self.writer = csv.writer(self.report)
            self.writer.writerow(["line", "reasons", *self.file.header])
        self.writer.writerow([line, "; ".join(reasons), *fields])
        self.job.rejected += 1


def _lookup(
    *, tenant: Tenant, model: type[Any], index: str, keys: Iterable[str], extra: dict[str, Any]
) -> dict[str, Any]:
    """Rows of `model` whose blind index `index` matches each key (under every live index key version)."""
    unique = sorted(set(keys))
    candidates = blind_index_values_many(
        tenant_id=tenant.pk, model=model, field_name=index, values=[[key] for key in unique]
    )
    by_candidate = {candidate: key for key, found in zip(unique, candidates, strict=True) for candidate in found}
    if not by_candidate:
        return {}
    rows = model.objects.filter(tenant=tenant, **{f"{index}__in": list(by_candidate)}, **extra)
    return {by_candidate[getattr(row, index)]: row for row in rows}


def billed_amounts(*, statements: Iterable[Statement]) -> dict[int, int]:
    """Statement id -> its amount as last imported: its charge plus the import's adjustments."""
    ids = [statement.pk for statement in statements]
    rows = (
        LedgerEntry.objects.filter(statement_id__in=ids)
        .filter(Q(kind=EntryKind.CHARGE) | Q(kind=EntryKind.ADJUSTMENT, memo=IMPORT_ADJUSTMENT_MEMO))
        .values("statement_id")
        .annotate(total=Sum("amount_minor"))
    )
    return {row["statement_id"]: int(row["total"]) for row in rows}


def _same_person(patient: Patient, row: ImportRow) -> bool:
    listing = patient.listing  # one decryption for the three values
    return (
        normalize_text(listing.last_name) == normalize_text(row.last_name)
        and normalize_text(listing.first_name) == normalize_text(row.first_name)
        and listing.date_of_birth == row.date_of_birth
    )


def _apply_batch(run: _Run, batch: list[tuple[ImportRow, list[str]]]) -> None:
    job, tenant = run.job, run.job.tenant
    patients = _lookup(
        tenant=tenant, model=Patient, index="account_number_index", keys=(r.account_number for r, _ in batch), extra={}
    )
    statements = _lookup(
        tenant=tenant, model=Statement, index="number_index", keys=(r.statement_key for r, _ in batch), extra={}
    )
    billed = billed_amounts(statements=statements.values())
    new_patients: dict[str, Patient] = {}
    new_statements: list[tuple[ImportRow, Statement]] = []
    entries: list[LedgerEntry] = []
    for row, fields in batch:
        patient = patients.get(row.account_number) or new_patients.get(row.account_number)
        if patient is not None and not _same_person(patient, row):
            run.reject(row.line, fields, ["account_number belongs to a patient with another name or date of birth"])
            continue
        statement = statements.get(row.statement_key)
        if statement is not None and (patient is None or statement.patient_id != patient.pk):
            run.reject(row.line, fields, ["statement_number belongs to another patient's statement"])
            continue
        if patient is None:
            patient = new_patients[row.account_number] = Patient(
                tenant=tenant,
                account_number=row.account_number,
                first_name=row.first_name,
                last_name=row.last_name,
                date_of_birth=row.date_of_birth,
                email=row.email,
                phone=row.phone,
            )
        job.accepted += 1
        if statement is None:
            new_statements.append((row, _new_statement(tenant, patient, row)))
            continue
        _update_details(statement, row)
        delta = row.amount_due_minor - billed.get(statement.pk, 0)
        if delta == 0:
            job.unchanged += 1
            continue
        job.adjusted += 1
        entries.append(
            LedgerEntry(
                tenant=tenant,
                patient=patient,
                statement=statement,
                kind=EntryKind.ADJUSTMENT,
                amount_minor=delta,
                currency=statement.currency,
                memo=IMPORT_ADJUSTMENT_MEMO,
            )
        )
    Patient.objects.bulk_create(list(new_patients.values()))
    job.patients_created += len(new_patients)
    # bulk_create takes each statement's patient id from its (now saved) patient.
    Statement.objects.bulk_create([statement for _row, statement in new_statements])
    job.statements_created += len(new_statements)
    entries.extend(
        LedgerEntry(
            tenant=tenant,
            patient=statement.patient,
            statement=statement,
            kind=EntryKind.CHARGE,
            amount_minor=statement.amount_due_minor,
            currency=statement.currency,
            memo=ISSUED_MEMO,
        )
        for _row, statement in new_statements
    )
    LedgerEntry.objects.bulk_create(entries)


def _new_statement(tenant: Tenant, patient: Patient, row: ImportRow) -> Statement:
    return Statement(
        tenant=tenant,
        patient=patient,
        number=row.statement_number,
        statement_date=row.statement_date,
        due_date=row.due_date,
        amount_due_minor=row.amount_due_minor,
        currency=tenant.currency,
        summary=row.summary,
    )


def _update_details(statement: Statement, row: ImportRow) -> None:
    changed = []
    if statement.statement_date != row.statement_date:
        statement.statement_date = row.statement_date
        changed.append("statement_date")
    if statement.due_date != row.due_date:
        statement.due_date = row.due_date
        changed.append("due_date")
    if row.summary and statement.summary != row.summary:
        statement.summary = row.summary
        changed.append("summary")
    if changed:
        statement.save(update_fields=changed)


_COUNTS = (
    "rows_done",
    "accepted",
    "rejected",
    "patients_created",
    "statements_created",
    "adjusted",
    "unchanged",
)


def _commit_batch(run: _Run, batch: list[tuple[ImportRow, list[str]]], rows_done: int) -> None:
    """Apply one batch with the job's counts in one transaction; once more if a parallel import raced it."""
    job = run.job
    before = {name: getattr(job, name) for name in _COUNTS}
    report_at = run.report.tell()
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                _apply_batch(run, batch)
                job.rows_done = rows_done
                job.save(update_fields=[*_COUNTS])
            return
        except IntegrityError:
            # Another import created one of these patients or statements first
            # (the unique blind indexes): look again; the rows now match.
            for name, value in before.items():
                setattr(job, name, value)
            run.report.seek(report_at)
            run.report.truncate()
            if attempt == 2:
                raise


def statement_import_run(*, job: ImportJob, file: ImportFile, progress: Progress | None = None) -> ImportJob:
    """Import `file` for `job` (in the job's tenant scope). Side effects: rows, ledger entries,
    the job's counts and sealed report, and one `statements.imported` audit event (counts only)."""
    tenant = job.tenant
    today = timezone.localdate()
    run = _Run(job=job, file=file)
    job.status = ImportStatus.RUNNING
    job.rows_total = file.rows_total
    job.ignored_columns = list(file.ignored_columns)
    job.save(update_fields=["status", "rows_total", "ignored_columns"])
    batch: list[tuple[ImportRow, list[str]]] = []
    rows_done = 0
    for line, fields in import_rows(file.text):
        rows_done += 1
        parsed = import_row_parse(line=line, fields=fields, header=file.header, currency=tenant.currency, today=today)
        if isinstance(parsed, list):
            run.reject(line, fields, parsed)
        elif parsed.statement_key in run.first_line_of:
            run.reject(
                line, fields, [f"statement_number already appears on line {run.first_line_of[parsed.statement_key]}"]
            )
        else:
            run.first_line_of[parsed.statement_key] = line
            batch.append((parsed, fields))
        if rows_done % BATCH_SIZE == 0:
            _commit_batch(run, batch, rows_done)
            batch = []
            if progress is not None:
                progress(job)
    _commit_batch(run, batch, rows_done)
    if progress is not None:
        progress(job)
    return _finish(job, run)


def _report_by_line(report: str) -> str:
    """The report with its rows in file order (rows rejected when their batch was applied come last)."""
    if not report:
        return ""
    rows = list(csv.reader(io.StringIO(report)))
    out = io.StringIO()
    csv.writer(out).writerows([rows[0], *sorted(rows[1:], key=lambda row: int(row[0]))])
    return out.getvalue()


def _finish(job: ImportJob, run: _Run) -> ImportJob:
    with transaction.atomic():
        job.status = ImportStatus.DONE
        job.report = _report_by_line(run.report.getvalue())
        job.upload = ""  # the file is PHI: not kept once imported
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "report", "upload", "finished_at"])
        audit_record(
            action="statements.imported",
            tenant=job.tenant,
            actor=job.created_by,
            actor_role=job.created_by_role,
            target_type="statement_import",
            target_id=str(job.public_id),
            details={
                "rows": job.rows_done,
                "accepted": job.accepted,
                "rejected": job.rejected,
                "created": job.statements_created,
                "patients_created": job.patients_created,
                "adjusted": job.adjusted,
                "unchanged": job.unchanged,
            },
        )
    return job


def import_job_create(
    *, tenant: Tenant, actor: Any | None, actor_role: str, file: ImportFile, keep_upload: bool
) -> ImportJob:
    """A queued import of a checked file. `keep_upload` seals the file's text on the job
    (for the background task, which clears it when done)."""
    job = ImportJob(
        tenant=tenant,
        created_by=actor,
        created_by_role=actor_role,
        rows_total=file.rows_total,
        ignored_columns=list(file.ignored_columns),
        upload=file.text if keep_upload else "",
    )
    job.save()
    return job


def import_job_fail(*, job: ImportJob) -> None:
    """Mark a job whose run raised; the batches applied so far stay (re-importing is safe)."""
    job.status = ImportStatus.FAILED
    job.upload = ""
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "upload", "finished_at"])


def import_job_run(*, job_id: int) -> str:
    """Run a queued job from its sealed upload (the Celery task's service); its status after."""
    with platform_scope():
        job = ImportJob.objects.select_related("tenant", "created_by").get(pk=job_id)
    with tenant_scope(job.tenant):
        with transaction.atomic():
            # Claimed under the row lock: a redelivered task (acks_late) finds it taken.
            job = (
                ImportJob.objects.select_for_update(of=("self",)).select_related("tenant", "created_by").get(pk=job_id)
            )
            if job.status != ImportStatus.QUEUED:
                return str(job.status)
            job.status = ImportStatus.RUNNING
            job.save(update_fields=["status"])
        try:
            statement_import_run(job=job, file=import_text_open(job.upload))
        except Exception:
            import_job_fail(job=job)
            raise
    return str(job.status)
