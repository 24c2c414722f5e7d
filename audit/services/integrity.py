"""Signed checkpoints and in-place verification of the chains."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.utils import timezone

from audit.anchors import AnchorError, AnchorSet
from audit.chain import GENESIS, RECORD_FIELDS, checkpoint_message, format_time
from audit.models import (
    AuditArchiveSegment,
    AuditChain,
    AuditCheckpoint,
    AuditEvent,
    AuditVerification,
    Outcome,
    VerificationStatus,
)
from audit.recorder import _normalised_ip, audit_record
from audit.services.anchoring import AnchorStore, anchor_pending, chain_anchors, checkpoint_anchor
from audit.signing import SignatureVerifier, Signer, current_signer
from audit.verification import ChainVerifier, Checkpoint, VerificationResult
from portal.models import Tenant
from portal.tenancy.context import Scope, platform_scope, tenant_scope

logger = logging.getLogger(__name__)

CHUNK = 5000

# Columns read for verification and exports, in audit.chain field order (the
# chain itself is known from the query).
EVENT_COLUMNS = tuple(field for field in RECORD_FIELDS if field != "chain")


def row_record(chain_key: str, row: tuple[Any, ...]) -> dict[str, Any]:
    """A canonical record from a values_list row of EVENT_COLUMNS."""
    (seq, public_id, occurred_at, actor, role, action, ttype, tid, outcome, ip, rid, details, prev, hsh) = row
    return {
        "chain": chain_key,
        "sequence": seq,
        "public_id": str(public_id),
        "occurred_at": format_time(occurred_at),
        "actor_user_id": str(actor) if actor else None,
        "actor_role": role,
        "action": action,
        "target_type": ttype,
        "target_id": tid,
        "outcome": outcome,
        "source_ip": _normalised_ip(ip),
        "request_id": rid,
        "details": details,
        "prev_hash": prev,
        "hash": hsh,
    }


def chain_for(tenant: Tenant | None) -> AuditChain | None:
    if tenant is None:
        return AuditChain.objects.filter(tenant__isnull=True).first()
    return AuditChain.objects.filter(tenant=tenant).first()


def chain_scope(chain: AuditChain) -> AbstractContextManager[Scope]:
    """The narrowest scope in which row-level security shows `chain`: its tenant's, or the platform's.

    System tasks (beat checkpoints, archive, verification) enter it themselves,
    so they never depend on whatever scope their caller happened to hold.
    """
    tenant = chain.tenant
    if tenant is None:
        return platform_scope()
    return tenant_scope(tenant)


def checkpoint_sign(
    *, chain: AuditChain, signer: Signer | None = None, store: AnchorStore | None = None
) -> AuditCheckpoint | None:
    """Sign the current head of `chain` and anchor it outside the database; None when nothing new.

    System task (no permission). Side effects: one AuditCheckpoint row and one
    audit.checkpoint_signed event on the same chain, in one transaction. The
    signed head is the one before that event, which the next checkpoint covers.
    Once that commits, the checkpoint is written to the anchor store
    (audit.services.anchoring); if the store fails, that is logged and the
    next run (checkpoint_sign_all) anchors it.
    """
    signer = signer or current_signer()
    with chain_scope(chain), transaction.atomic(durable=True):
        head = AuditChain.objects.select_for_update().get(pk=chain.pk)
        last = AuditCheckpoint.objects.filter(chain=head).order_by("-sequence").first()
        if head.last_sequence == 0 or (last is not None and last.sequence >= head.last_sequence - 1):
            # Nothing but our own previous checkpoint event since the last one.
            return None
        signed_at_time = timezone.now()
        signed_at = format_time(signed_at_time)
        message = checkpoint_message(
            chain=head.key, sequence=head.last_sequence, head_hash=head.last_hash, signed_at=signed_at
        )
        checkpoint = AuditCheckpoint.objects.create(
            chain=head,
            sequence=head.last_sequence,
            head_hash=head.last_hash,
            signed_at=signed_at_time,
            key_id=signer.key_id,
            algorithm=signer.algorithm,
            signature=signer.sign(message),
        )
        audit_record(
            action="audit.checkpoint_signed",
            tenant=head.tenant,
            actor_role="system",
            target_type="audit_chain",
            target_id=head.key,
            details={"sequence": checkpoint.sequence, "key_id": signer.key_id[:64]},
        )
    with chain_scope(chain):
        try:
            checkpoint_anchor(checkpoint=checkpoint, store=store)
        except ImproperlyConfigured:
            raise
        except Exception:
            logger.exception("audit checkpoint %s of chain %s could not be anchored", checkpoint.sequence, chain.key)
    return checkpoint


def checkpoint_sign_all() -> int:
    """Sign every chain that moved since its last checkpoint; returns how many were signed.

    Celery beat runs this with no scope: listing every chain is a platform act,
    and each chain is then signed in its own scope (checkpoint_sign).
    """
    signer = current_signer()
    with platform_scope():
        chains = list(AuditChain.objects.select_related("tenant").order_by("pk"))
    signed = 0
    for chain in chains:
        with chain_scope(chain):
            # Checkpoints a failed store left unanchored go first, oldest first.
            anchor_pending(chain=chain)
        if checkpoint_sign(chain=chain, signer=signer) is not None:
            signed += 1
    return signed


def checkpoints_of(chain: AuditChain, *, first: int = 0, last: int | None = None) -> list[Checkpoint]:
    rows = AuditCheckpoint.objects.filter(chain=chain, sequence__gte=first)
    if last is not None:
        rows = rows.filter(sequence__lte=last)
    return [
        Checkpoint(
            sequence=c.sequence,
            hash=c.head_hash,
            signed_at=format_time(c.signed_at),
            key_id=c.key_id,
            algorithm=c.algorithm,
            signature=c.signature,
        )
        for c in rows.order_by("sequence")
    ]


def chain_events(chain: AuditChain, *, first: int = 1, last: int | None = None) -> Iterator[dict[str, Any]]:
    """The chain's events in sequence order as canonical records, streamed in chunks."""
    rows = AuditEvent.objects.filter(chain=chain, sequence__gte=first)
    if last is not None:
        rows = rows.filter(sequence__lte=last)
    for row in rows.order_by("sequence").values_list(*EVENT_COLUMNS).iterator(chunk_size=CHUNK):
        yield row_record(chain.key, row)


def chain_verify(
    *, chain: AuditChain, signer: SignatureVerifier | None = None, store: AnchorStore | None = None
) -> VerificationResult:
    """Verify a whole chain in place: hashes, links, checkpoints, anchors, head. Read-only.

    Checkpoint signatures count only when made by a key the key provider holds
    (or the legacy HMAC key): a checkpoint re-signed with any other key fails.
    The chain is held to the checkpoints anchored outside the database, read
    first: a checkpoint is anchored only after it committed, so everything
    anchored by then is in the snapshot read next. Raises AnchorError when
    the anchor store cannot be read (the chain cannot be vouched for then).
    """
    signer = signer or current_signer()
    anchors = chain_anchors(chain=chain, store=store)
    outermost = not connection.in_atomic_block
    with chain_scope(chain), transaction.atomic():
        if connection.vendor == "postgresql" and outermost:
            # One snapshot for events, checkpoints and head: a checkpoint or event
            # committed mid-walk must not read as a deletion.
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return _chain_verify(chain, signer, anchors)


def _chain_verify(chain: AuditChain, signer: SignatureVerifier, anchors: AnchorSet) -> VerificationResult:
    archived = AuditArchiveSegment.objects.filter(chain=chain).order_by("-last_sequence").first()
    start_sequence = archived.last_sequence + 1 if archived else 1
    start_prev = archived.last_hash if archived else GENESIS
    verifier = ChainVerifier(
        chain.key,
        start_sequence=start_sequence,
        start_prev_hash=start_prev,
        checkpoints=checkpoints_of(chain, first=start_sequence),
        signer=signer,
        anchors=anchors,
    )
    for record in chain_events(chain, first=1):
        verifier.add_event(record)
    head = AuditChain.objects.get(pk=chain.pk)
    return verifier.finish(head_sequence=head.last_sequence, head_hash=head.last_hash)


def verification_run(*, verification: AuditVerification) -> AuditVerification:
    """Run one requested verification of the tenant's chain and record its result.

    Side effects: the AuditVerification row is updated, and an audit.verified
    event (outcome failure when the chain is broken) is appended.
    """
    tenant = verification.tenant
    with tenant_scope(tenant):
        AuditVerification.objects.filter(pk=verification.pk).update(status=VerificationStatus.RUNNING)
        chain = chain_for(tenant)
        unreadable = ""
        if chain is None:
            result = VerificationResult(chain=str(tenant.public_id))
        else:
            try:
                result = chain_verify(chain=chain)
            except AnchorError as exc:
                result, unreadable = VerificationResult(chain=chain.key), str(exc)
        with transaction.atomic():
            verification.status = VerificationStatus.PASSED if result.ok else VerificationStatus.FAILED
            if unreadable:
                verification.status = VerificationStatus.ERROR
            verification.events_checked = result.events_checked
            verification.checkpoints_checked = result.checkpoints_checked
            verification.last_sequence = result.last_sequence
            verification.first_bad_sequence = result.first_bad_sequence
            verification.message = "\n".join([result.summary(), *(str(p) for p in result.problems[1:])])[:4000]
            if unreadable:
                verification.message = f"Could not check the chain against its anchors: {unreadable}"
            verification.finished_at = timezone.now()
            verification.save(
                update_fields=[
                    "status",
                    "events_checked",
                    "checkpoints_checked",
                    "last_sequence",
                    "first_bad_sequence",
                    "message",
                    "finished_at",
                ]
            )
            audit_record(
                action="audit.verified",
                tenant=tenant,
                outcome=Outcome.SUCCESS if result.ok and not unreadable else Outcome.FAILURE,
                actor_role="system",
                target_type="audit_verification",
                target_id=str(verification.public_id),
                details={"events": result.events_checked, "first_bad_sequence": result.first_bad_sequence},
            )
    return verification
