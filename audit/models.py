"""Append-only audit events. No PHI: references (type + public id) only."""

from __future__ import annotations

from django.db import models


class Outcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    DENIED = "denied", "Denied"


class AuditEvent(models.Model):
    # Null tenant: a platform-level act (operator actions, platform logins).
    tenant = models.ForeignKey("portal.Tenant", null=True, on_delete=models.PROTECT, related_name="+")
    occurred_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor_user_id = models.UUIDField(null=True)  # User.public_id
    actor_role = models.CharField(max_length=32, blank=True)  # role, "guest", "processor" or "system"
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)  # a public id, never PHI
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    source_ip = models.GenericIPAddressField(null=True)
    request_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict)

    class Meta:
        indexes = [models.Index(fields=["tenant", "occurred_at"])]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.action} {self.outcome}"
