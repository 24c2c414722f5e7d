"""Statement import in the staff console: upload, progress and results, the rejected-rows report.

The checking and applying live in billing.services.statement_import(_file);
the import itself runs as a Celery task (inline where tasks are eager).
"""

from __future__ import annotations

import csv
import io
from uuid import UUID

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from audit.models import Outcome
from audit.recorder import audit_record
from billing import tasks
from billing.access import access_import_job_by_uuid
from billing.forms import StatementImportForm
from billing.import_models import ImportJob, ImportStatus
from billing.services.statement_import import import_job_create
from billing.services.statement_import_file import MAX_IMPORT_BYTES, ImportRefused, import_file_open
from security.permissions import require_permission

RECENT_IMPORTS = 20
# Rejected rows listed on the page; the downloadable report has them all.
SHOWN_REJECTIONS = 200


@require_permission("statements.import")
@require_http_methods(["GET", "POST"])
def statement_imports(request: HttpRequest) -> HttpResponse:
    """Upload a statement file (POST) or see the recent imports (GET).

    A refused file changes nothing: its problem is shown on the file field and
    audited (`statements.import_refused`, with a fixed code, never the content).
    """
    tenant = request.tenant  # type: ignore[attr-defined]
    role = request.access.role  # type: ignore[attr-defined]
    form = StatementImportForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            if upload.size > MAX_IMPORT_BYTES:
                raise ImportRefused(
                    f"The file is {upload.size / 1024 / 1024:.1f} MB; the limit is "
                    f"{MAX_IMPORT_BYTES // 1024 // 1024} MB. Split it into smaller files.",
                    code="too_large",
                )
            checked = import_file_open(upload.read())
        except ImportRefused as refused:
            form.add_error("file", refused.message)
            audit_record(
                action="statements.import_refused",
                tenant=tenant,
                outcome=Outcome.FAILURE,
                actor=request.user,
                actor_role=role,
                target_type="statement_import",
                request=request,
                details={"reason": refused.code},
            )
        else:
            with transaction.atomic(durable=True):
                job = import_job_create(
                    tenant=tenant, actor=request.user, actor_role=role, file=checked, keep_upload=True
                )
                job_id = job.pk
                transaction.on_commit(lambda: tasks.statement_import_run.delay(job_id))
            return redirect("staff:statement-import", job_id=job.public_id)
    if request.method == "POST":
        status = 400
    recent = ImportJob.objects.filter(tenant=tenant).select_related("created_by")[:RECENT_IMPORTS]
    return render(request, "billing/staff/imports.html", {"form": form, "recent": recent}, status=status)


def _rejections(job: ImportJob) -> list[tuple[str, str]]:
    """(line, reasons) of the first rejected rows: the report's first two columns, no row values."""
    if not job.report:
        return []
    reader = csv.reader(io.StringIO(job.report))
    next(reader, None)
    shown = []
    for row in reader:
        shown.append((row[0], row[1]))
        if len(shown) == SHOWN_REJECTIONS:
            break
    return shown


@require_permission("statements.import")
@require_GET
def statement_import(request: HttpRequest, job_id: UUID) -> HttpResponse:
    """One import's progress (the page refreshes itself while it runs) and results."""
    job = access_import_job_by_uuid(tenant=request.tenant, uuid=job_id)  # type: ignore[attr-defined]
    context = {
        "job": job,
        "running": job.status in (ImportStatus.QUEUED, ImportStatus.RUNNING),
        "rejections": _rejections(job) if job.status == ImportStatus.DONE else [],
        "shown_limit": SHOWN_REJECTIONS,
    }
    return render(request, "billing/staff/import.html", context)


@require_permission("statements.import")
@require_GET
def statement_import_report(request: HttpRequest, job_id: UUID) -> HttpResponse:
    """The rejected rows with their line numbers and reasons, as CSV. It repeats the rows'
    values (PHI), so it is audited and never cached."""
    job = access_import_job_by_uuid(tenant=request.tenant, uuid=job_id)  # type: ignore[attr-defined]
    if job.status != ImportStatus.DONE or not job.rejected:
        return redirect("staff:statement-import", job_id=job.public_id)
    with transaction.atomic(durable=True):
        audit_record(
            action="statements.import_report_downloaded",
            tenant=job.tenant,
            actor=request.user,
            actor_role=request.access.role,  # type: ignore[attr-defined]
            target_type="statement_import",
            target_id=str(job.public_id),
            request=request,
            details={"rows": job.rejected},
        )
    response = HttpResponse(job.report, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="rejected-rows-{job.public_id}.csv"'
    response["Cache-Control"] = "no-store"
    return response
