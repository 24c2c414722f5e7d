"""Retention: months older than the hot period move to S3-compatible storage.

For each chain, oldest month first: the month's events are written as a JSONL
segment (the export format, every event in full), uploaded, read back and
verified, recorded as an AuditArchiveSegment (the database checks its first
and last hashes against the events), and only then deleted from the hot
table, in one transaction. A signed manifest per chain lists every segment;
`python -m audit.verify manifest.json` checks the segments and that each
continues the previous one. The bucket should have S3 Object Lock
(compliance mode, 6 years) in production: docs/audit.md.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from audit import conf
from audit.chain import GENESIS, digest_text, format_time
from audit.exportformat import Filters, footer_message, write_segment
from audit.models import AuditArchiveSegment, AuditChain, AuditEvent, AuditEventSubject
from audit.periods import Period
from audit.recorder import audit_record
from audit.services.integrity import chain_events, chain_scope, checkpoints_of
from audit.signing import Signer, current_signer
from audit.verify import MANIFEST_FORMAT, verify_export
from portal.tenancy.context import platform_scope


class ArchiveError(RuntimeError):
    pass


def s3_client() -> Any:
    import boto3

    return boto3.client("s3", **conf.archive_client_kwargs())


def _month_bounds(period: str) -> tuple[datetime, datetime]:
    start = datetime.strptime(period + "-01", "%Y-%m-%d").replace(tzinfo=UTC)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def hot_cutoff() -> datetime:
    return timezone.now() - timedelta(days=conf.hot_days())


def _object_key(chain: AuditChain, name: str) -> str:
    return f"{conf.archive_prefix()}/{chain.key}/{name}"


def archive_month(
    *,
    chain: AuditChain,
    period: str,
    client: Any | None = None,
    bucket: str | None = None,
    signer: Signer | None = None,
) -> AuditArchiveSegment | None:
    """Archive one month of one chain; None when it has no events in the hot table.

    System task, run in the chain's own scope (row-level security). Raises
    ArchiveError if the month is still hot, an older month is still
    unarchived, or the uploaded copy does not verify.
    """
    client = client or s3_client()
    bucket = bucket or conf.archive_bucket()
    signer = signer or current_signer()
    with chain_scope(chain):
        return _archive_month(chain=chain, period=period, client=client, bucket=bucket, signer=signer)


def _archive_month(
    *, chain: AuditChain, period: str, client: Any, bucket: str, signer: Signer
) -> AuditArchiveSegment | None:
    start, end = _month_bounds(period)
    if end > hot_cutoff():
        raise ArchiveError(f"{period} is inside the hot period ({conf.hot_days()} days)")
    bounds = AuditEvent.objects.filter(chain=chain, occurred_at__gte=start, occurred_at__lt=end).aggregate(
        first=Min("sequence"), last=Max("sequence")
    )
    if bounds["first"] is None:
        return None
    first, last = int(bounds["first"]), int(bounds["last"])
    if AuditEvent.objects.filter(chain=chain, sequence__lt=first).exists():
        raise ArchiveError(f"older events of chain {chain.key} are still in the hot table; archive them first")
    previous = AuditArchiveSegment.objects.filter(chain=chain).order_by("-last_sequence").first()
    start_prev = AuditEvent.objects.filter(chain=chain, sequence=first).values_list("prev_hash", flat=True).get()
    expected_prev = previous.last_hash if previous else GENESIS
    if start_prev != expected_prev:
        raise ArchiveError(f"chain {chain.key} does not continue its last archived segment at {first}")
    key = _object_key(chain, f"{period}.jsonl")
    with tempfile.TemporaryFile() as spool:
        stats = write_segment(
            jsonl=spool,
            csv_sink=None,
            header={
                "chain": chain.key,
                "tenant": chain.tenant.slug if chain.tenant else "",
                "period": period,
                **Period(start, end).header(),  # the month's first and last day, both included
            },
            records=chain_events(chain, first=first, last=last),
            start_sequence=first,
            start_prev_hash=start_prev,
            checkpoints=checkpoints_of(chain, first=first, last=last),
            filters=Filters(),
            signer=signer,
        )
        if stats.verification is None or not stats.verification.ok:
            raise ArchiveError(f"chain {chain.key} does not verify in {period}; not archiving a broken segment")
        spool.seek(0)
        client.put_object(
            Bucket=bucket, Key=key, Body=spool, ContentType="application/x-ndjson", Metadata={"sha256": stats.sha256}
        )
    # Read it back: only a copy that verifies where it is stored may replace the rows.
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    with tempfile.TemporaryFile() as copy:
        digest = hashlib.sha256()
        for chunk in iter(lambda: body.read(64 * 1024), b""):
            digest.update(chunk)
            copy.write(chunk)
        copy.seek(0)
        if digest_text(digest.digest()) != stats.sha256 or not verify_export(copy, signer=signer).ok:
            raise ArchiveError(f"the stored copy of {key} does not verify; the events stay in the database")
    with transaction.atomic():
        segment = AuditArchiveSegment.objects.create(
            chain=chain,
            period=period,
            first_sequence=first,
            last_sequence=last,
            first_prev_hash=start_prev,
            last_hash=stats.last_hash,
            event_count=last - first + 1,
            bucket=bucket,
            object_key=key,
            sha256=stats.sha256,
        )
        AuditEventSubject.objects.filter(event__chain=chain, event__sequence__range=(first, last)).delete()
        AuditEvent.objects.filter(chain=chain, sequence__range=(first, last)).delete()
        audit_record(
            action="audit.archived",
            tenant=chain.tenant,
            actor_role="system",
            target_type="audit_chain",
            target_id=chain.key,
            details={"period": period, "first_sequence": first, "last_sequence": last, "sha256": stats.sha256},
        )
        transaction.on_commit(lambda: manifest_write(chain=chain, client=client, bucket=bucket, signer=signer))
    return segment


def manifest_write(*, chain: AuditChain, client: Any, bucket: str, signer: Signer | None = None) -> dict[str, Any]:
    """(Re)write the chain's signed manifest listing every archived segment.

    Runs after the archiving transaction commits, when the caller's scope may
    be gone, so it enters the chain's scope itself.
    """
    signer = signer or current_signer()
    with chain_scope(chain):
        segments = list(AuditArchiveSegment.objects.filter(chain=chain).order_by("first_sequence"))
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "chain": chain.key,
        "generated_at": format_time(timezone.now()),
        "segments": [
            {
                "period": s.period,
                "object_key": s.object_key,
                "sha256": s.sha256,
                "first_sequence": s.first_sequence,
                "last_sequence": s.last_sequence,
                "first_prev_hash": s.first_prev_hash,
                "last_hash": s.last_hash,
                "event_count": s.event_count,
            }
            for s in segments
        ],
        "key_id": signer.key_id,
        "algorithm": signer.algorithm,
    }
    manifest["signature"] = signer.sign(footer_message(manifest))
    client.put_object(
        Bucket=bucket,
        Key=_object_key(chain, "manifest.json"),
        Body=json.dumps(manifest, sort_keys=True, indent=1).encode(),
        ContentType="application/json",
    )
    return manifest


def archive_due(*, client: Any | None = None, bucket: str | None = None) -> int:
    """Archive every whole month older than the hot period, oldest first. Returns segments written.

    Listing every chain is a platform act; each chain is archived in its own scope.
    """
    client = client or s3_client()
    cutoff = hot_cutoff()
    written = 0
    with platform_scope():
        chains = list(AuditChain.objects.select_related("tenant").order_by("pk"))
    for chain in chains:
        while True:
            with chain_scope(chain):
                oldest = (
                    AuditEvent.objects.filter(chain=chain)
                    .order_by("sequence")
                    .values_list("occurred_at", flat=True)
                    .first()
                )
            if oldest is None:
                break
            period = oldest.astimezone(UTC).strftime("%Y-%m")
            if _month_bounds(period)[1] > cutoff:
                break
            if archive_month(chain=chain, period=period, client=client, bucket=bucket) is None:
                break
            written += 1
    return written
