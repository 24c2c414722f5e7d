"""manage.py import_statements --tenant SLUG FILE [--dry-run]: import a statement file.

Exit status 0 when the file was processed (even with rejected rows, which are
printed with their line numbers and reasons); non-zero when the file itself is
refused (nothing is imported) or the clinic is unknown.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from billing.import_models import ImportJob
from billing.services.statement_import import import_job_create, statement_import_run
from billing.services.statement_import_file import MAX_IMPORT_BYTES, ImportRefused, import_file_open
from portal.models import Tenant
from portal.tenancy.context import tenant_scope

_BAR_WIDTH = 30


class _DryRun(Exception):
    """Raised to roll a dry run back after its counts are known."""


class Command(BaseCommand):
    help = "Import a CSV file of statements for one clinic (docs/statement-import.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="the clinic's slug")
        parser.add_argument("file", help="the CSV file (UTF-8)")
        parser.add_argument("--dry-run", action="store_true", help="check and count everything, change nothing")

    def _progress(self, job: ImportJob) -> None:
        done = job.rows_done * _BAR_WIDTH // max(job.rows_total, 1)
        bar = "#" * done + "-" * (_BAR_WIDTH - done)
        self.stderr.write(f"\r[{bar}] {job.rows_done}/{job.rows_total} rows", ending="")
        self.stderr.flush()

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No clinic has the slug {options['tenant']!r}.")
        path = Path(options["file"])
        try:
            if path.stat().st_size > MAX_IMPORT_BYTES:
                raise CommandError(
                    f"Refused: the file is larger than {MAX_IMPORT_BYTES // 1024 // 1024} MB; nothing was imported."
                )
            data = path.read_bytes()
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror}.") from None
        try:
            checked = import_file_open(data)
        except ImportRefused as refused:
            raise CommandError(f"Refused: {refused.message} Nothing was imported.") from None
        del data
        with tenant_scope(tenant):
            try:
                with transaction.atomic():
                    job = import_job_create(
                        tenant=tenant, actor=None, actor_role="command", file=checked, keep_upload=False
                    )
                    statement_import_run(job=job, file=checked, progress=self._progress)
                    if options["dry_run"]:
                        raise _DryRun
            except _DryRun:
                pass
        self.stderr.write("")
        self._report(job, dry_run=options["dry_run"])

    def _report(self, job: ImportJob, *, dry_run: bool) -> None:
        prefix = "Dry run (nothing was changed): " if dry_run else ""
        self.stdout.write(
            f"{prefix}{job.rows_done} rows: {job.accepted} accepted, {job.rejected} rejected; "
            f"{job.statements_created} statements created, {job.patients_created} patients created, "
            f"{job.adjusted} adjusted, {job.unchanged} unchanged."
        )
        if job.ignored_columns:
            self.stdout.write(f"Columns ignored (not stored): {', '.join(job.ignored_columns)}.")
        if job.rejected:
            self.stdout.write("Rejected rows:")
            reader = csv.reader(io.StringIO(job.report))
            next(reader, None)
            for row in reader:
                self.stdout.write(f"  line {row[0]}: {row[1]}")
