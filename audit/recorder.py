"""The one way to write an audit event.

Call it inside the same transaction as the act it records, so the event and
the act commit or roll back together. The event is appended to its chain
(the tenant's, or the platform's for tenant None) under a lock on the chain's
head row, which is held until that transaction ends: concurrent writers to
one chain queue behind each other, so the chain never forks and a rolled-back
act leaves no gap. Record the event late in the transaction (after any slow
work) to keep that lock short.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from audit.actions import ACTIONS, REFERENCE_LISTS
from audit.chain import GENESIS, PLATFORM_CHAIN, event_hash, format_time
from audit.models import AuditChain, AuditEvent, AuditEventSubject, Outcome
from portal.logging import request_id_var
from portal.models import Tenant
from portal.net import client_ip

# Detail values must be short scalars: ids, codes, counts, amounts. Anything
# else is refused so that PHI cannot slip into the trail through free text.
_ALLOWED_DETAIL_TYPES = (str, int, bool, type(None))
_MAX_DETAIL_STRING = 64
_MAX_DETAIL_LIST = 500
_MAX_DETAIL_KEYS = 32


class AuditDetailError(ValueError):
    pass


# References and codes: ids, slugs, action names, ISO times, base64. No
# whitespace (free text has it) and no "@" (email addresses).
_DETAIL_STRING = re.compile(r"[A-Za-z0-9_.:/+=,#-]*")


def _check_string(key: str, value: str) -> None:
    if len(value) > _MAX_DETAIL_STRING:
        raise AuditDetailError(f"audit detail {key!r} is too long to be a reference or code")
    if not _DETAIL_STRING.fullmatch(value):
        raise AuditDetailError(f"audit detail {key!r} must be a reference or code (no spaces, no email addresses)")


def _validated_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    if details and len(details) > _MAX_DETAIL_KEYS:
        raise AuditDetailError("too many audit details")
    for key, value in (details or {}).items():
        if not isinstance(key, str) or not key or len(key) > _MAX_DETAIL_STRING:
            raise AuditDetailError("audit detail keys must be short strings")
        if isinstance(value, list | tuple):
            # Lists of references (public ids of the records a page showed).
            if len(value) > _MAX_DETAIL_LIST or not all(isinstance(item, str) for item in value):
                raise AuditDetailError(f"audit detail {key!r} must be a list of short references")
            for item in value:
                _check_string(key, item)
            clean[key] = list(value)
            continue
        if isinstance(value, bool) or value is None:
            clean[key] = value
            continue
        if not isinstance(value, _ALLOWED_DETAIL_TYPES):
            raise AuditDetailError(f"audit detail {key!r} must be a short scalar")
        if isinstance(value, str):
            _check_string(key, value)
        clean[key] = value
    return clean


def chain_key_for(tenant: Tenant | None) -> str:
    return str(tenant.public_id) if tenant is not None else PLATFORM_CHAIN


def _locked_chain(tenant: Tenant | None) -> AuditChain:
    """The chain's head row, locked until the surrounding transaction ends."""
    key = chain_key_for(tenant)
    chain = AuditChain.objects.select_for_update().filter(key=key).first()
    if chain is not None:
        return chain
    # First event of this chain. Two first writers may race: the loser's
    # insert is ignored and both then lock the one row.
    AuditChain.objects.bulk_create(
        [AuditChain(key=key, tenant=tenant, last_sequence=0, last_hash=GENESIS)], ignore_conflicts=True
    )
    return AuditChain.objects.select_for_update().get(key=key)


def _normalised_ip(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _subjects(target_type: str, target_id: str, details: Mapping[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if target_type and target_id:
        found.append((target_type, target_id))
    for key, subject_type in REFERENCE_LISTS.items():
        value = details.get(key)
        if isinstance(value, list):
            found.extend((subject_type, item) for item in value)
    return list(dict.fromkeys(found))


def event_record(event: AuditEvent, chain_key: str) -> dict[str, Any]:
    """The canonical record (audit.chain.RECORD_FIELDS) of a saved or unsaved event."""
    return {
        "chain": chain_key,
        "sequence": event.sequence,
        "public_id": str(event.public_id),
        "occurred_at": format_time(event.occurred_at),
        "actor_user_id": str(event.actor_user_id) if event.actor_user_id else None,
        "actor_role": event.actor_role,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "outcome": event.outcome,
        "source_ip": _normalised_ip(event.source_ip),
        "request_id": event.request_id,
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def audit_record(
    *,
    action: str,
    tenant: Tenant | None,
    outcome: str = Outcome.SUCCESS,
    actor: Any | None = None,
    actor_role: str = "",
    target_type: str = "",
    target_id: str = "",
    request: HttpRequest | None = None,
    details: Mapping[str, Any] | None = None,
    source_ip: str | None = None,
) -> AuditEvent:
    """Append one event to the chain of `tenant` (None: the platform chain).

    Side effects: locks the chain head until the caller's transaction ends.
    Raises ValueError for an unregistered action and AuditDetailError for
    details that could carry free text.
    """
    if action not in ACTIONS:
        raise ValueError(f"unregistered audit action {action!r}")
    if outcome not in Outcome.values:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    clean = _validated_details(details)
    target = str(target_id)
    if len(target) > 64 or len(target_type) > 64:
        raise AuditDetailError("audit targets are a type and a public id")
    ip = _normalised_ip(client_ip(request) if request is not None else source_ip)
    request_id = request_id_var.get() if request_id_var.get() != "-" else ""
    # No savepoint: a failure to record must fail the act it records, and
    # skipping SAVEPOINT/RELEASE saves two round trips per event.
    with transaction.atomic(savepoint=False):
        chain = _locked_chain(tenant)
        # Read the clock under the lock, so time order follows sequence order.
        now = timezone.now()
        event = AuditEvent(
            public_id=uuid.uuid4(),
            chain=chain,
            sequence=chain.last_sequence + 1,
            tenant=tenant,
            occurred_at=now,
            actor_user_id=getattr(actor, "public_id", None),
            actor_role=actor_role,
            action=action,
            target_type=target_type,
            target_id=target,
            outcome=outcome,
            source_ip=ip,
            request_id=request_id[:64],
            details=clean,
            prev_hash=chain.last_hash,
        )
        event.hash = event_hash(event_record(event, chain.key))
        event.save(force_insert=True)
        AuditChain.objects.filter(pk=chain.pk).update(
            last_sequence=event.sequence, last_hash=event.hash, updated_at=now
        )
        subjects = _subjects(target_type, target, clean)
        if subjects:
            AuditEventSubject.objects.bulk_create(
                [AuditEventSubject(event=event, tenant=tenant, subject_type=t, subject_id=i) for t, i in subjects]
            )
    return event
