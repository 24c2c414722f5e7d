"""Compliance exports: request, build (Celery), single-use download links."""

from __future__ import annotations

import hashlib
import io
import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from audit import conf
from audit.anchors import AnchorSet
from audit.chain import GENESIS, digest_text, format_time
from audit.crypto import EncryptingWriter, KeyWrapper, decrypt_stream
from audit.exportformat import Filters, SegmentStats, write_segment
from audit.models import AuditChain, AuditEvent, AuditExport, AuditExportLink, ExportFile, ExportStatus, Outcome
from audit.pdf import summary_pdf
from audit.periods import Period
from audit.recorder import audit_record
from audit.services.anchoring import chain_anchors
from audit.services.integrity import chain_for, checkpoints_of
from audit.services.segments import write_chain_segment
from audit.signing import Signer, current_signer
from audit.verification import Checkpoint, reaches_its_generation
from portal.models import Tenant
from portal.tenancy.context import tenant_scope

logger = logging.getLogger(__name__)

FILE_NAMES = {ExportFile.CSV: "events.csv", ExportFile.JSONL: "events.jsonl", ExportFile.PDF: "summary.pdf"}
CONTENT_TYPES = {
    ExportFile.CSV: "text/csv",
    ExportFile.JSONL: "application/x-ndjson",
    ExportFile.PDF: "application/pdf",
}


def export_download_name(*, export: AuditExport, kind: str) -> str:
    """The name a downloaded file gets (and the one to give `python -m audit.verify`)."""
    return f"audit-{export.public_id}-{FILE_NAMES[ExportFile(kind)]}"


class ExportError(ValueError):
    """A request that cannot be exported; the message is safe to show."""


def _file_path(export: AuditExport, kind: str) -> Path:
    return (
        conf.export_dir() / str(export.tenant.public_id) / str(export.public_id) / f"{FILE_NAMES[ExportFile(kind)]}.enc"
    )


def _context(export: AuditExport, kind: str) -> dict[str, str]:
    # Associated data: a file decrypts only as this file of this export of this tenant.
    return {"tenant": str(export.tenant.public_id), "export": str(export.public_id), "file": kind}


def export_validate_range(*, date_from: datetime, date_to: datetime) -> None:
    if date_to <= date_from:
        raise ExportError("The end of the range must be after its start.")
    if date_to - date_from > timedelta(days=conf.export_max_days()):
        raise ExportError(f"A range may span at most {conf.export_max_days()} days; split it into several exports.")


def export_request(
    *,
    tenant: Tenant,
    actor: Any | None,
    actor_role: str,
    date_from: datetime,
    date_to: datetime,
    filters: Filters,
    request: Any | None = None,
) -> AuditExport:
    """Queue an export of `tenant`'s chain for [date_from, date_to). Needs audit.export.

    The console and `export_audit` pass whole UTC days (audit.periods.day_bounds).

    Side effects: one AuditExport row and an audit.export_requested event in
    one transaction; the build task is queued on commit.
    """
    export_validate_range(date_from=date_from, date_to=date_to)
    from audit.tasks import audit_export_build

    with transaction.atomic():
        export = AuditExport.objects.create(
            tenant=tenant,
            requested_by=actor if getattr(actor, "pk", None) else None,
            date_from=date_from,
            date_to=date_to,
            filters=filters.as_dict(),
        )
        audit_record(
            action="audit.export_requested",
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            target_type="audit_export",
            target_id=str(export.public_id),
            request=request,
            details={**Period(date_from, date_to).header(), **filters.as_dict()},
        )
        export_id = export.pk
        transaction.on_commit(lambda: audit_export_build.delay(export_id))
    return export


def _segment_bounds(export: AuditExport) -> tuple[int, int] | None:
    chain = chain_for(export.tenant)
    if chain is None:
        return None
    bounds = AuditEvent.objects.filter(
        chain=chain, occurred_at__gte=export.date_from, occurred_at__lt=export.date_to
    ).aggregate(first=Min("sequence"), last=Max("sequence"))
    if bounds["first"] is None:
        return None
    return int(bounds["first"]), int(bounds["last"])


def _stored_checkpoints(chain: AuditChain, first: int, last: int, header: dict[str, Any]) -> list[Checkpoint]:
    """The checkpoint rows of the segment. In an export that reaches its generation time, one of the
    last event is left out: it may have committed after the bounds were read, without the event
    that records it (the verifier would then read the segment as cut short)."""
    rows = checkpoints_of(chain, first=first, last=last)
    if reaches_its_generation(header):
        rows = [c for c in rows if c.sequence < last]
    return rows


def with_latest_anchor(checkpoints: list[Checkpoint], anchored: AnchorSet | None, *, first: int) -> list[Checkpoint]:
    """The segment's checkpoints plus the latest one anchored outside the database before its end.

    The anchor replaces a stored checkpoint of the same sequence (the row is
    what an insider could have changed). Beyond the segment's last event it
    makes the export itself show that the chain was cut short; the offline
    verifier needs no other input to see it.
    """
    latest = anchored.latest if anchored is not None else None
    if latest is None or latest.sequence < first:
        return checkpoints
    return sorted([*(c for c in checkpoints if c.sequence != latest.sequence), latest], key=lambda c: c.sequence)


def export_build(
    *,
    export: AuditExport,
    progress: Callable[[int, int], None] | None = None,
    wrapper: KeyWrapper | None = None,
    signer: Signer | None = None,
) -> AuditExport:
    """Build the three encrypted files of `export` in one streaming pass.

    Side effects: files under SETTLE_AUDIT_EXPORT_DIR, progress on the export
    row, and an audit.export_built event (failure outcome if it failed).
    """
    tenant = export.tenant
    signer = signer or current_signer()
    with tenant_scope(tenant):
        AuditExport.objects.filter(pk=export.pk).update(status=ExportStatus.RUNNING)
        try:
            stats = _build_files(export, progress=progress, wrapper=wrapper, signer=signer)
        except Exception:
            logger.exception("audit export %s failed", export.public_id)
            with transaction.atomic():
                export.status = ExportStatus.FAILED
                export.error = "The export could not be built; the error was logged."
                export.finished_at = timezone.now()
                export.save(update_fields=["status", "error", "finished_at"])
                audit_record(
                    action="audit.export_built",
                    tenant=tenant,
                    outcome=Outcome.FAILURE,
                    actor_role="system",
                    target_type="audit_export",
                    target_id=str(export.public_id),
                )
            return export
        with transaction.atomic():
            export.status = ExportStatus.READY
            export.matched_events = stats.events
            export.processed_events = stats.events + stats.links
            export.first_sequence = stats.first_sequence
            export.last_sequence = stats.last_sequence
            export.finished_at = timezone.now()
            export.save(
                update_fields=[
                    "status",
                    "matched_events",
                    "processed_events",
                    "first_sequence",
                    "last_sequence",
                    "finished_at",
                ]
            )
            audit_record(
                action="audit.export_built",
                tenant=tenant,
                actor_role="system",
                target_type="audit_export",
                target_id=str(export.public_id),
                details={"events": stats.events, "sha256": stats.sha256},
            )
    return export


def _build_files(
    export: AuditExport,
    *,
    progress: Callable[[int, int], None] | None,
    wrapper: KeyWrapper | None,
    signer: Signer,
) -> SegmentStats:
    tenant = export.tenant
    chain = chain_for(tenant)
    # The anchors first: whatever was anchored by now had committed, so the
    # bounds read next include its events (see integrity.chain_verify).
    anchored = chain_anchors(chain=chain, before=format_time(export.date_to)) if chain is not None else None
    bounds = _segment_bounds(export)
    first, last = bounds if bounds else (1, 0)
    total = max(0, last - first + 1)
    AuditExport.objects.filter(pk=export.pk).update(total_events=total, processed_events=0)
    start_prev = GENESIS
    if bounds and chain is not None:
        start_prev = AuditEvent.objects.filter(chain=chain, sequence=first).values_list("prev_hash", flat=True).get()

    def report(done: int) -> None:
        AuditExport.objects.filter(pk=export.pk).update(processed_events=done)
        if progress is not None:
            progress(done, total)

    folder = _file_path(export, ExportFile.JSONL).parent
    folder.mkdir(parents=True, exist_ok=True)
    temp = {kind: _file_path(export, kind).with_suffix(".part") for kind in FILE_NAMES}
    with temp[ExportFile.JSONL].open("wb") as jsonl_file, temp[ExportFile.CSV].open("wb") as csv_file:
        jsonl = EncryptingWriter(jsonl_file, context=_context(export, ExportFile.JSONL), wrapper=wrapper)
        csv_out = EncryptingWriter(csv_file, context=_context(export, ExportFile.CSV), wrapper=wrapper)
        header = {
            "chain": chain.key if chain else str(tenant.public_id),
            "tenant": tenant.slug,
            "export_id": str(export.public_id),
            # "from"/"to": the first and last day, both included (audit.periods).
            **Period(export.date_from, export.date_to).header(),
            "generated_at": format_time(timezone.now()),
        }
        filters = Filters.from_dict(export.filters)
        if bounds and chain is not None:
            stats = write_chain_segment(
                chain=chain,
                first=first,
                last=last,
                jsonl=jsonl,
                csv_sink=csv_out,
                header=header,
                start_prev_hash=start_prev,
                checkpoints=with_latest_anchor(_stored_checkpoints(chain, first, last, header), anchored, first=first),
                filters=filters,
                signer=signer,
                progress=report,
                progress_every=2000,
            )
        else:
            stats = write_segment(
                jsonl=jsonl,  # type: ignore[arg-type]
                csv_sink=csv_out,  # type: ignore[arg-type]
                header=header,
                records=iter(()),
                start_sequence=first,
                start_prev_hash=start_prev,
                checkpoints=[],
                filters=filters,
                signer=signer,
                progress=report,
                progress_every=2000,
            )
        jsonl.close()
        csv_out.close()
    facts = [
        ("Clinic", tenant.name),
        ("Range", Period(export.date_from, export.date_to).label()),
        ("Filters", ", ".join(f"{k}={v}" for k, v in Filters.from_dict(export.filters).as_dict().items()) or "none"),
        ("Matching events", str(stats.events)),
        (
            "Chain segment",
            f"sequences {stats.first_sequence}-{stats.last_sequence}" if stats.first_sequence else "empty",
        ),
        ("Last hash", stats.last_hash or "-"),
        ("JSONL SHA-256", stats.sha256),
        ("Export id", str(export.public_id)),
        ("Generated", format_time(timezone.now())),
    ]
    with temp[ExportFile.PDF].open("wb") as pdf_file:
        pdf = EncryptingWriter(pdf_file, context=_context(export, ExportFile.PDF), wrapper=wrapper)
        pdf.write(summary_pdf(facts=facts, stats=stats, jsonl_name=export_download_name(export=export, kind="jsonl")))
        pdf.close()
    for kind, path in temp.items():
        path.replace(_file_path(export, kind))
    return stats


def export_open(*, export: AuditExport, kind: str, wrapper: KeyWrapper | None = None) -> Iterator[bytes]:
    """Decrypted content of one export file, streamed. Callers check permission first."""
    path = _file_path(export, kind)
    with path.open("rb") as source:
        yield from decrypt_stream(source, context=_context(export, kind), wrapper=wrapper)


def export_read_all(*, export: AuditExport, kind: str, wrapper: KeyWrapper | None = None) -> bytes:
    buffer = io.BytesIO()
    for chunk in export_open(export=export, kind=kind, wrapper=wrapper):
        buffer.write(chunk)
    return buffer.getvalue()


def _token_hash(token: str) -> str:
    return digest_text(hashlib.sha256(token.encode()).digest())


def export_link_create(
    *, export: AuditExport, kind: str, user: Any, actor_role: str, request: Any | None = None
) -> str:
    """Issue a single-use link to one file of a ready export. Needs audit.export.

    Returns the token (only its hash is stored). Audited.
    """
    if export.status != ExportStatus.READY:
        raise ExportError("This export is not ready yet.")
    if kind not in FILE_NAMES:
        raise ExportError("Unknown file.")
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        AuditExportLink.objects.create(
            tenant=export.tenant,
            export=export,
            file=kind,
            token_hash=_token_hash(token),
            created_by=user,
            expires_at=timezone.now() + timedelta(seconds=conf.export_link_ttl_seconds()),
        )
        audit_record(
            action="audit.export_link_created",
            tenant=export.tenant,
            actor=user,
            actor_role=actor_role,
            target_type="audit_export",
            target_id=str(export.public_id),
            request=request,
            details={"file": kind},
        )
    return token


@dataclass(frozen=True)
class LinkUse:
    export: AuditExport | None
    kind: str
    status: str  # "ok", "gone" (used or expired) or "missing"


def export_link_consume(
    *, tenant: Tenant, token: str, user: Any, actor_role: str, request: Any | None = None
) -> LinkUse:
    """Use a download link once. Needs audit.export and being the officer it was issued to.

    Every attempt on an existing link is audited (success, or denied when the
    link was used, expired or issued to someone else).
    """
    with transaction.atomic():
        link = (
            AuditExportLink.objects.select_for_update()
            .select_related("export", "export__tenant")
            .filter(tenant=tenant, token_hash=_token_hash(token))
            .first()
        )
        if link is None:
            return LinkUse(export=None, kind="", status="missing")
        now = timezone.now()
        if link.created_by_id != user.pk:
            status = "missing"
        elif link.used_at is not None or link.expires_at <= now:
            status = "gone"
        else:
            status = "ok"
            link.used_at = now
            link.save(update_fields=["used_at"])
        audit_record(
            action="audit.export_downloaded",
            tenant=tenant,
            outcome=Outcome.SUCCESS if status == "ok" else Outcome.DENIED,
            actor=user,
            actor_role=actor_role,
            target_type="audit_export",
            target_id=str(link.export.public_id),
            request=request,
            details={"file": link.file, "reason": status},
        )
    return LinkUse(export=link.export if status == "ok" else None, kind=link.file, status=status)
