"""Naming the records an access report is about, for people allowed to read them.

The audit trail holds references only (a patient's public id). Its console
sits below the apps that own those records, so it cannot look them up
itself: an owning app registers a describer for its subject type in its
AppConfig.ready (billing registers "patient", billing/audit_subjects.py), and
the console asks it. A name is PHI: `subject_name_read` shows it only to a
user holding the describer's permission, and records the read (the
describer's action, naming the record) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db import transaction

from audit.models import AuditEventSubject
from audit.recorder import audit_record
from portal.models import Tenant


@dataclass(frozen=True)
class SubjectDescriber:
    permission: str  # the permission that lets a role read such records, e.g. "patients.view"
    read_action: str  # the audit action recorded when a name is shown, e.g. "patient.name_viewed"
    exists: Callable[[Tenant, UUID], bool]  # a record of this clinic (no PHI read)
    name: Callable[[Tenant, UUID], str]  # the record's name (a PHI read)


_DESCRIBERS: dict[str, SubjectDescriber] = {}


def register_subject_describer(subject_type: str, describer: SubjectDescriber) -> None:
    """Called by the app that owns `subject_type` records, from its AppConfig.ready."""
    _DESCRIBERS[subject_type] = describer


def subject_describer(subject_type: str) -> SubjectDescriber | None:
    return _DESCRIBERS.get(subject_type)


def subject_exists(*, tenant: Tenant, subject_type: str, subject_id: UUID) -> bool:
    """Whether the clinic has (or its trail names) this record: the report on anything else is a 404."""
    describer = subject_describer(subject_type)
    if describer is not None:
        return describer.exists(tenant, subject_id)
    # No owning app to ask: the record is known only by the events that name it.
    return AuditEventSubject.objects.filter(
        tenant=tenant, subject_type=subject_type, subject_id=str(subject_id)
    ).exists()


def subject_name_read(
    *,
    tenant: Tenant,
    subject_type: str,
    subject_id: UUID,
    permissions: Collection[str],
    actor: Any,
    actor_role: str,
    shown_on: str,
    request: Any | None = None,
) -> str | None:
    """The record's name for a user whose `permissions` include the describer's; None otherwise.

    `shown_on` names the page that shows it (an action code such as
    "audit.patient_report"), recorded in the event's details.

    Side effect when a name is returned: the describer's read action (target:
    the record) in its own transaction, so the read is on the trail before
    the name reaches the page. No describer, no permission: nothing is read
    or recorded.
    """
    describer = subject_describer(subject_type)
    if describer is None or describer.permission not in permissions:
        return None
    with transaction.atomic():
        name = describer.name(tenant, subject_id)
        audit_record(
            action=describer.read_action,
            tenant=tenant,
            actor=actor,
            actor_role=actor_role,
            target_type=subject_type,
            target_id=str(subject_id),
            request=request,
            details={"shown_on": shown_on},
        )
    return name
