"""Reads of the audit trail. Each takes the tenant explicitly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db.models import QuerySet
from django.http import Http404

from audit.models import AuditCheckpoint, AuditEvent, AuditEventSubject, AuditExport, AuditVerification
from portal.models import Tenant
from security.models import BreakGlassGrant, Membership, User


@dataclass(frozen=True)
class EventFilters:
    date_from: datetime
    date_to: datetime  # exclusive
    actor: UUID | None = None
    action: str = ""
    outcome: str = ""
    patient: UUID | None = None
    target_type: str = ""


def event_search(*, tenant: Tenant, filters: EventFilters) -> QuerySet[AuditEvent]:
    """Events of `tenant`'s chain matching `filters`, newest first."""
    events = AuditEvent.objects.filter(
        tenant=tenant, occurred_at__gte=filters.date_from, occurred_at__lt=filters.date_to
    )
    if filters.actor is not None:
        events = events.filter(actor_user_id=filters.actor)
    if filters.action:
        events = events.filter(action=filters.action)
    if filters.outcome:
        events = events.filter(outcome=filters.outcome)
    if filters.target_type:
        events = events.filter(target_type=filters.target_type)
    if filters.patient is not None:
        events = events.filter(
            pk__in=AuditEventSubject.objects.filter(
                tenant=tenant, subject_type="patient", subject_id=str(filters.patient)
            ).values("event_id")
        )
    return events.order_by("-sequence")


def events_naming_patient(*, tenant: Tenant, patient_id: UUID) -> QuerySet[AuditEvent]:
    """Every event that read or touched the patient (as target or in a list shown)."""
    subjects = AuditEventSubject.objects.filter(tenant=tenant, subject_type="patient", subject_id=str(patient_id))
    return AuditEvent.objects.filter(tenant=tenant, pk__in=subjects.values("event_id")).order_by("-sequence")


def events_by_actor(*, tenant: Tenant, user: User) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(tenant=tenant, actor_user_id=user.public_id).order_by("-sequence")


def access_event_by_uuid(*, tenant: Tenant, uuid: UUID) -> AuditEvent:
    """An event of this tenant's chain; 404 for missing and other tenants' alike."""
    event = AuditEvent.objects.filter(tenant=tenant, public_id=uuid).first()
    if event is None:
        raise Http404
    return event


def access_member_by_uuid(*, tenant: Tenant, uuid: UUID) -> User:
    """A user who is (or was) a member of this tenant, or an operator who held
    break-glass access to it; 404 otherwise."""
    membership = Membership.objects.select_related("user").filter(tenant=tenant, user__public_id=uuid).first()
    if membership is not None:
        return membership.user
    grant = BreakGlassGrant.objects.select_related("operator").filter(tenant=tenant, operator__public_id=uuid).first()
    if grant is None:
        raise Http404
    return grant.operator


def access_export_by_uuid(*, tenant: Tenant, uuid: UUID) -> AuditExport:
    export = AuditExport.objects.select_related("tenant", "requested_by").filter(tenant=tenant, public_id=uuid).first()
    if export is None:
        raise Http404
    return export


def access_verification_by_uuid(*, tenant: Tenant, uuid: UUID) -> AuditVerification:
    verification = AuditVerification.objects.filter(tenant=tenant, public_id=uuid).first()
    if verification is None:
        raise Http404
    return verification


def checkpoint_exists(*, tenant: Tenant) -> bool:
    """Whether any signed checkpoint of `tenant`'s chain is on record."""
    return AuditCheckpoint.objects.filter(chain__tenant=tenant).exists()


def members_of(*, tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__email")


def actor_labels(*, tenant: Tenant, events: list[AuditEvent]) -> dict[str, str]:
    """public id -> email for the actors of `events` who are members of `tenant`
    or operators who held break-glass access to it (two queries)."""
    ids = {e.actor_user_id for e in events if e.actor_user_id}
    if not ids:
        return {}
    rows = Membership.objects.filter(tenant=tenant, user__public_id__in=ids).values_list(
        "user__public_id", "user__email"
    )
    labels = {str(public_id): email for public_id, email in rows}
    # Platform operators appear in a clinic's trail only through break-glass access.
    operators = BreakGlassGrant.objects.filter(tenant=tenant, operator__public_id__in=ids).values_list(
        "operator__public_id", "operator__email"
    )
    labels.update({str(public_id): f"{email} (platform operator)" for public_id, email in operators})
    return labels
