"""Data keys and key rotations. Imported by security.models (app label "security").

Both are tenant-owned: a data key belongs to one clinic, and row-level
security on PostgreSQL keeps a connection scoped to one clinic from even
reading another clinic's wrapped keys.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from portal.tenancy.models import TenantOwnedModel


class KeyPurpose(models.TextChoices):
    # Patient data (names, dates of birth, contact details, statement detail).
    PHI = "phi", "PHI fields"
    # Tenant secrets (processor keys, webhook signing secrets, SMS credentials).
    SECRET = "secret", "Tenant secrets"
    # Keys of the blind indexes used for exact-match look-ups.
    INDEX = "index", "Blind indexes"


class DataKeyState(models.TextChoices):
    # Encrypts new values; exactly one per tenant and purpose.
    ACTIVE = "active", "Active"
    # Superseded: still decrypts rows a rotation has not reached yet.
    RETIRING = "retiring", "Retiring"
    # No row uses it any more (checked before the state is set).
    RETIRED = "retired", "Retired"


class DataKey(TenantOwnedModel):
    """One version of a tenant's data key for one purpose, stored only wrapped.

    Invariant: `wrapped_key` is the provider's wrapping of the 32-byte key under
    the encryption context (tenant, purpose, version); the plaintext key is
    never stored or logged (security.crypto.keyring keeps it in memory).
    """

    purpose = models.CharField(max_length=16, choices=KeyPurpose.choices)
    version = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=DataKeyState.choices, default=DataKeyState.ACTIVE)
    # Which provider and which of its keys (master key fingerprint or KMS key ARN) wrapped it.
    provider = models.CharField(max_length=16)
    wrapping_key_id = models.CharField(max_length=255)
    wrapped_key = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    rewrapped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "purpose", "version"], name="data_key_version_unique"),
            models.UniqueConstraint(
                fields=["tenant", "purpose"], condition=Q(state="active"), name="data_key_one_active_per_purpose"
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="data_key_version_positive"),
        ]

    def __str__(self) -> str:
        return f"data key {self.tenant_id}/{self.purpose}/v{self.version} ({self.state})"


class RotationStatus(models.TextChoices):
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"


class KeyRotation(TenantOwnedModel):
    """Progress of one re-encryption from old key versions to `to_version`.

    `progress` maps a model label to the last primary key re-encrypted; it is
    written in the same transaction as that batch, so a killed worker resumes
    exactly where its last committed batch ended.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    purpose = models.CharField(max_length=16, choices=KeyPurpose.choices)
    to_version = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=RotationStatus.choices, default=RotationStatus.RUNNING)
    progress = models.JSONField(default=dict)
    rows_total = models.PositiveIntegerField(default=0)  # estimate taken at start
    rows_done = models.PositiveIntegerField(default=0)  # rows rewritten so far
    started_by = models.UUIDField(null=True)  # User.public_id, None for the system
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "purpose"], condition=Q(status="running"), name="key_rotation_one_running"
            ),
        ]

    def __str__(self) -> str:
        return f"rotation {self.tenant_id}/{self.purpose} -> v{self.to_version} ({self.status})"

    @property
    def percent(self) -> int:
        if self.status == RotationStatus.FINISHED:
            return 100
        if not self.rows_total:
            return 0
        return min(99, self.rows_done * 100 // self.rows_total)
