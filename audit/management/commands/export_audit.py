"""Export a clinic's audit trail from the command line, with a progress bar.

    manage.py export_audit --tenant SLUG --from 2026-01-01 --to 2026-01-31 --out DIR [--action A] [--outcome O]

Does what the console's export does (an AuditExport, built by the same
service, audited) and then writes the decrypted files to DIR. --from and --to
are UTC days, both included, as in the console (audit.periods.day_bounds).
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from audit.actions import ACTIONS
from audit.exportformat import Filters
from audit.models import AuditExport, ExportFile, ExportStatus, Outcome
from audit.periods import TIME_ZONE_NAME, Period, day_bounds
from audit.recorder import audit_record
from audit.services.exports import FILE_NAMES, ExportError, export_build, export_open, export_validate_range
from portal.models import Tenant
from portal.tenancy.context import tenant_scope


def _day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--{name} must be a date such as 2026-01-31, not {value!r}") from None


class Command(BaseCommand):
    help = "Build an audit export (CSV, verifiable JSONL, PDF summary) and write it to a folder."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG")
        parser.add_argument(
            "--from", dest="date_from", required=True, metavar="YYYY-MM-DD", help=f"first day ({TIME_ZONE_NAME})"
        )
        parser.add_argument(
            "--to",
            dest="date_to",
            required=True,
            metavar="YYYY-MM-DD",
            help=f"last day ({TIME_ZONE_NAME}), included: the whole of that day is exported",
        )
        parser.add_argument("--out", required=True, metavar="DIR")
        parser.add_argument("--action", default="", choices=["", *sorted(ACTIONS)], metavar="ACTION")
        parser.add_argument("--outcome", default="", choices=["", *Outcome.values])
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"no clinic with slug {options['tenant']!r}", returncode=2)
        first, last = _day(options["date_from"], "from"), _day(options["date_to"], "to")
        if last < first:
            raise CommandError("--to is the last day exported (included); it must not be before --from", returncode=2)
        date_from, date_to = day_bounds(first=first, last=last)
        period = Period(date_from, date_to)
        try:
            export_validate_range(date_from=date_from, date_to=date_to)
        except ExportError as exc:
            raise CommandError(str(exc), returncode=2) from None
        out = Path(options["out"])
        out.mkdir(parents=True, exist_ok=True)
        filters = Filters(action=options["action"], outcome=options["outcome"])
        show = not options["no_progress"]
        with tenant_scope(tenant):
            with transaction.atomic():
                export = AuditExport.objects.create(
                    tenant=tenant, date_from=date_from, date_to=date_to, filters=filters.as_dict()
                )
                audit_record(
                    action="audit.export_requested",
                    tenant=tenant,
                    actor_role="system",
                    target_type="audit_export",
                    target_id=str(export.public_id),
                    details={"via": "cli", **period.header(), **filters.as_dict()},
                )
            export = export_build(export=export, progress=self._bar if show else None)
            if show:
                sys.stderr.write("\n")
            if export.status != ExportStatus.READY:
                raise CommandError(export.error or "the export failed")
            for kind in (ExportFile.JSONL, ExportFile.CSV, ExportFile.PDF):
                target = out / FILE_NAMES[kind]
                with target.open("wb") as handle:
                    for chunk in export_open(export=export, kind=kind):
                        handle.write(chunk)
        self.stdout.write(
            self.style.SUCCESS(
                f"Exported {export.matched_events} events of {period.label()} "
                f"(sequences {export.first_sequence}-{export.last_sequence}) to {out}/: "
                f"{', '.join(FILE_NAMES.values())}. Verify with: python -m audit.verify {out / 'events.jsonl'}"
            )
        )

    @staticmethod
    def _bar(done: int, total: int) -> None:
        width = 40
        fraction = done / total if total else 1.0
        filled = int(width * fraction)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} events {fraction:6.1%}")
        sys.stderr.flush()
