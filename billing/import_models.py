"""Statement imports: one row per uploaded file (billing.services.statement_import).

Imported at the end of billing.models so Django registers it with the billing app.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from portal.tenancy.models import TenantOwnedModel
from security.crypto.fields import EncryptedTextField
from security.crypto.models import KeyPurpose


class ImportStatus(models.TextChoices):
    QUEUED = "queued", "Waiting to start"
    RUNNING = "running", "Importing"
    DONE = "done", "Done"
    # The import stopped on an unexpected error; rows applied so far stay
    # (each batch is its own transaction) and importing the file again is safe.
    FAILED = "failed", "Failed"


class ImportJob(TenantOwnedModel):
    """One statement file being imported, with its progress and results.

    The uploaded file is PHI: it is sealed in `upload` until the import has
    run and then cleared. The rejected-rows report repeats the rejected rows'
    values (so staff can correct and re-import them): it is sealed too.
    Counts are plain numbers. Invariant: accepted + rejected == rows_done.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    # What the uploader's role was, for the audit event written when the import ends.
    created_by_role = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=16, choices=ImportStatus.choices, default=ImportStatus.QUEUED)
    upload = EncryptedTextField(blank=True, purpose=KeyPurpose.PHI)
    # Header names the file had that the import does not use (not PHI: column names).
    ignored_columns = models.JSONField(default=list)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    patients_created = models.PositiveIntegerField(default=0)
    statements_created = models.PositiveIntegerField(default=0)
    adjusted = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    # CSV: line, reasons, then the rejected row's own columns.
    report = EncryptedTextField(blank=True, purpose=KeyPurpose.PHI)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Statement import {self.public_id}"

    @property
    def progress_percent(self) -> int:
        if self.status == ImportStatus.DONE:
            return 100
        if not self.rows_total:
            return 0
        return min(100, self.rows_done * 100 // self.rows_total)

    @property
    def is_finished(self) -> bool:
        return self.status in (ImportStatus.DONE, ImportStatus.FAILED)
