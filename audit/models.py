"""Append-only audit events. No PHI: references (type + public id) only.

Tables and who may change them (PostgreSQL triggers, migration 0005):

- AuditEvent, AuditEventSubject, AuditCheckpoint, AuditArchiveSegment: append
  only. UPDATE and TRUNCATE are refused; DELETE only of events already covered
  by an archive segment and older than 90 days (retention, audit.services.archive).
- AuditChain: one head row per chain, moved forward by the recorder under a row
  lock; the chain itself is the evidence, the head is a lock and a cache.
- AuditExport, AuditExportLink, AuditVerification, AuditCheckpointAnchor:
  ordinary working state.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from audit.fields import CanonicalJSONField
from portal.tenancy.models import TenantOwnedModel


class Outcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    DENIED = "denied", "Denied"


class AuditChain(models.Model):
    """The head of one hash chain: one per tenant plus one for the platform.

    Invariant: last_sequence/last_hash equal the sequence and hash of the
    chain's newest event. The recorder locks this row (SELECT … FOR UPDATE)
    for the rest of the writing transaction, so concurrent writers append
    one after another: no forks, and a rolled-back act leaves no gap.
    """

    # Tenant public id, or "platform" for events without a tenant.
    key = models.CharField(max_length=64, unique=True)
    tenant = models.OneToOneField("portal.Tenant", null=True, on_delete=models.PROTECT, related_name="+")
    last_sequence = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.key}@{self.last_sequence}"


class AuditEvent(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    chain = models.ForeignKey(AuditChain, on_delete=models.PROTECT, related_name="+")
    sequence = models.BigIntegerField()
    # Null tenant: a platform-level act (operator actions, platform logins).
    tenant = models.ForeignKey("portal.Tenant", null=True, on_delete=models.PROTECT, related_name="+")
    # Set by the recorder under the chain lock, so time order follows sequence order.
    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_user_id = models.UUIDField(null=True)  # User.public_id
    actor_role = models.CharField(max_length=32, blank=True)  # role, "guest", "processor" or "system"
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)  # a public id, never PHI
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    source_ip = models.GenericIPAddressField(null=True)
    request_id = models.CharField(max_length=64, blank=True)
    # The canonical JSON its hash covers, as text (audit.fields).
    details = CanonicalJSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "occurred_at"], name="audit_audit_tenant__a79171_idx"),
            models.Index(fields=["tenant", "actor_user_id", "occurred_at"], name="audit_event_actor_idx"),
        ]
        constraints = [models.UniqueConstraint(fields=["chain", "sequence"], name="audit_event_chain_sequence")]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.action} {self.outcome}"


class AuditEventSubject(models.Model):
    """A record an event names (its target, or an id in a list the page showed).

    An index for "who accessed this patient"; derived from the hashed event,
    so it adds no evidence of its own and verification does not depend on it.
    """

    event = models.ForeignKey(AuditEvent, on_delete=models.CASCADE, related_name="subjects")
    tenant = models.ForeignKey("portal.Tenant", null=True, on_delete=models.PROTECT, related_name="+")
    subject_type = models.CharField(max_length=64)
    subject_id = models.CharField(max_length=64)

    class Meta:
        indexes = [models.Index(fields=["tenant", "subject_type", "subject_id"], name="audit_subject_lookup_idx")]

    def __str__(self) -> str:
        return f"{self.subject_type}:{self.subject_id}"


class AuditCheckpoint(models.Model):
    """A signed statement that a chain's event `sequence` had hash `head_hash`.

    Signed on a schedule (audit.tasks.audit_checkpoint_sign_all). Rewriting the
    chain, even with every hash recomputed, contradicts an earlier checkpoint.
    """

    chain = models.ForeignKey(AuditChain, on_delete=models.PROTECT, related_name="checkpoints")
    sequence = models.BigIntegerField()
    head_hash = models.CharField(max_length=64)
    signed_at = models.DateTimeField()
    key_id = models.CharField(max_length=200)
    algorithm = models.CharField(max_length=32)
    signature = models.TextField()  # base64

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain", "sequence"], name="audit_checkpoint_chain_sequence")]

    def __str__(self) -> str:
        return f"{self.chain_id}@{self.sequence}"


class AuditCheckpointAnchor(models.Model):
    """Where a checkpoint was anchored outside the database (audit.services.anchoring).

    Bookkeeping only: it says which checkpoints still need anchoring. The
    evidence is the anchor in the store, which verification reads itself;
    deleting this row only makes the next run anchor the checkpoint again.
    """

    chain = models.ForeignKey(AuditChain, on_delete=models.PROTECT, related_name="+")
    checkpoint = models.OneToOneField(AuditCheckpoint, on_delete=models.PROTECT, related_name="anchor")
    store = models.CharField(max_length=16)  # "file" or "s3"
    location = models.CharField(max_length=1024)  # file path, or s3://bucket/key#version
    anchored_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.checkpoint_id} at {self.location}"


class AuditArchiveSegment(models.Model):
    """One month of one chain, written to object storage and checked there.

    Invariant: first_prev_hash equals the previous segment's last_hash (or
    GENESIS), so archived months and the hot table form one chain.
    """

    chain = models.ForeignKey(AuditChain, on_delete=models.PROTECT, related_name="archive_segments")
    period = models.CharField(max_length=7)  # YYYY-MM
    first_sequence = models.BigIntegerField()
    last_sequence = models.BigIntegerField()
    first_prev_hash = models.CharField(max_length=64)
    last_hash = models.CharField(max_length=64)
    event_count = models.PositiveIntegerField()
    bucket = models.CharField(max_length=255)
    object_key = models.CharField(max_length=512)
    sha256 = models.CharField(max_length=64)
    archived_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain", "period"], name="audit_archive_chain_period")]

    def __str__(self) -> str:
        return f"{self.chain_id}:{self.period}"


class VerificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    PASSED = "passed", "Intact"
    FAILED = "failed", "Broken"
    ERROR = "error", "Could not run"


class AuditVerification(TenantOwnedModel):
    """One run of in-place verification of a tenant's chain (the console's "verify")."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=VerificationStatus.choices, default=VerificationStatus.PENDING)
    events_checked = models.BigIntegerField(default=0)
    checkpoints_checked = models.PositiveIntegerField(default=0)
    last_sequence = models.BigIntegerField(default=0)
    first_bad_sequence = models.BigIntegerField(null=True)
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"verification {self.public_id} {self.status}"


class ExportStatus(models.TextChoices):
    PENDING = "pending", "Queued"
    RUNNING = "running", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class ExportFile(models.TextChoices):
    CSV = "csv", "CSV"
    JSONL = "jsonl", "JSONL (verifiable)"
    PDF = "pdf", "PDF summary"


class AuditExport(TenantOwnedModel):
    """A compliance export of a date range (and optional filters) of one tenant's chain.

    Files are written encrypted (audit.crypto) under SETTLE_AUDIT_EXPORT_DIR.
    `filters` holds only validated references (action names, public ids).
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    date_from = models.DateTimeField()
    date_to = models.DateTimeField()  # exclusive
    filters = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=ExportStatus.choices, default=ExportStatus.PENDING)
    total_events = models.BigIntegerField(default=0)
    processed_events = models.BigIntegerField(default=0)
    matched_events = models.BigIntegerField(default=0)
    first_sequence = models.BigIntegerField(null=True)
    last_sequence = models.BigIntegerField(null=True)
    error = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"export {self.public_id} {self.status}"

    @property
    def progress_percent(self) -> int:
        if self.status == ExportStatus.READY:
            return 100
        if not self.total_events:
            return 0
        return min(99, int(self.processed_events * 100 / self.total_events))


class AuditExportLink(TenantOwnedModel):
    """A single-use, expiring download link for one file of one export.

    Only the SHA-256 of the token is stored; the token itself exists only in
    the URL given to the officer who asked for it, who alone may use it.
    """

    export = models.ForeignKey(AuditExport, on_delete=models.CASCADE, related_name="links")
    file = models.CharField(max_length=8, choices=ExportFile.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"link {self.export_id}/{self.file}"
