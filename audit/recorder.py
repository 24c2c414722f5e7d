"""The one way to write an audit event.

Call it inside the same transaction as the act it records, so the event and
the act commit or roll back together. The event is appended to its chain
(the tenant's, or the platform's for tenant None) under a lock on the chain's
head row, which is held until that transaction ends: concurrent writers to
one chain queue behind each other, so the chain never forks and a rolled-back
act leaves no gap. Record the event late in the transaction (after any slow
work) to keep that lock short.

Two ways to write, one result. On PostgreSQL an append is one statement: a
call of settle_audit_append (migration audit 0007), which locks the head,
takes the time, hashes, and writes the event, the head and the subject index
rows. The recorder sends the event's canonical JSON in four pieces around the
three values only the locked head decides (audit.chain.canonical_template),
so the hash is still audit.chain's, computed over the same bytes. Elsewhere
(SQLite, the embedded default) the ORM does the same steps in Python
(`_next_row`). tests/audit/test_recorder_paths.py proves both paths store the
same rows. One round trip instead of the ORM's four (or the two it took with
the lock as its own statement) is what brings the append rate to the target
(see "Append rate" in docs/performance.md).
"""

from __future__ import annotations

import functools
import ipaddress
import re
import uuid
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.db import connections, models, router, transaction
from django.http import HttpRequest
from django.utils import timezone

from audit.actions import ACTIONS, REFERENCE_LISTS
from audit.chain import (
    GENESIS,
    PLATFORM_CHAIN,
    RECORD_FIELDS,
    canonical_json,
    canonical_template,
    event_hash,
    format_time,
)
from audit.models import AuditChain, AuditEvent, AuditEventSubject, Outcome
from portal.logging import request_id_var
from portal.models import Tenant
from portal.net import client_ip
from portal.tenancy.context import Scope, active_scope, platform_scope, tenant_scope

# Detail values must be short scalars: ids, codes, counts, amounts. Anything
# else is refused so that PHI cannot slip into the trail through free text.
_ALLOWED_DETAIL_TYPES = (str, int, bool, type(None))
_MAX_DETAIL_STRING = 64
_MAX_DETAIL_LIST = 500
_MAX_DETAIL_KEYS = 32

# Database vendors that append through settle_audit_append. Anything else takes
# the ORM path; a test empties this set to compare the two on PostgreSQL.
FAST_PATH_VENDORS = frozenset({"postgresql"})


_M = TypeVar("_M", bound=models.Model)


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


# An event's columns (attribute names) that its canonical record is made of:
# every record field but the chain key, which the head row holds.
_RECORD_ATTNAMES = tuple(field for field in RECORD_FIELDS if field != "chain")


def _record_but_chain_values(row: Mapping[str, Any], chain_key: str) -> dict[str, Any]:
    """The canonical record's fields that do not come from the chain head (all but TEMPLATE_HOLES and hash)."""
    actor = row["actor_user_id"]
    return {
        "chain": chain_key,
        "public_id": str(row["public_id"]),
        "actor_user_id": str(actor) if actor else None,
        "actor_role": row["actor_role"],
        "action": row["action"],
        "target_type": row["target_type"],
        "target_id": row["target_id"],
        "outcome": row["outcome"],
        "source_ip": _normalised_ip(row["source_ip"]),
        "request_id": row["request_id"],
        "details": row["details"],
    }


def _canonical_record(row: Mapping[str, Any], chain_key: str) -> dict[str, Any]:
    """The canonical record (audit.chain.RECORD_FIELDS) of an event's column values."""
    return {
        **_record_but_chain_values(row, chain_key),
        "sequence": row["sequence"],
        "occurred_at": format_time(row["occurred_at"]),
        "prev_hash": row["prev_hash"],
        "hash": row["hash"],
    }


def event_record(event: AuditEvent, chain_key: str) -> dict[str, Any]:
    """The canonical record (audit.chain.RECORD_FIELDS) of a saved or unsaved event."""
    return _canonical_record({name: getattr(event, name) for name in _RECORD_ATTNAMES}, chain_key)


@dataclass(frozen=True, slots=True)
class _Draft:
    """An event's validated values, before it has a place in a chain."""

    tenant: Tenant | None
    chain_key: str
    actor_user_id: Any
    actor_role: str
    action: str
    target_type: str
    target_id: str
    outcome: str
    source_ip: str | None
    request_id: str
    details: dict[str, Any]
    subjects: list[tuple[str, str]]

    @property
    def tenant_id(self) -> int | None:
        return self.tenant.pk if self.tenant is not None else None

    def columns(self) -> dict[str, Any]:
        """The event's column values (attribute names) that the caller decides, not the chain."""
        return {
            "tenant_id": self.tenant_id,
            "actor_user_id": self.actor_user_id,
            "actor_role": self.actor_role,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "outcome": self.outcome,
            "source_ip": self.source_ip,
            "request_id": self.request_id,
            "details": self.details,
        }


def _draft(
    *,
    action: str,
    tenant: Tenant | None,
    outcome: str,
    actor: Any | None,
    actor_role: str,
    target_type: str,
    target_id: str,
    request: HttpRequest | None,
    details: Mapping[str, Any] | None,
    source_ip: str | None,
) -> _Draft:
    """Validate the caller's values; raises before anything touches the database."""
    if action not in ACTIONS:
        raise ValueError(f"unregistered audit action {action!r}")
    if outcome not in Outcome.values:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    clean = _validated_details(details)
    target = str(target_id)
    if len(target) > 64 or len(target_type) > 64:
        raise AuditDetailError("audit targets are a type and a public id")
    request_id = request_id_var.get()
    return _Draft(
        tenant=tenant,
        chain_key=chain_key_for(tenant),
        actor_user_id=getattr(actor, "public_id", None),
        actor_role=actor_role,
        action=action,
        target_type=target_type,
        target_id=target,
        outcome=outcome,
        source_ip=_normalised_ip(client_ip(request) if request is not None else source_ip),
        request_id=request_id[:64] if request_id != "-" else "",
        details=clean,
        subjects=_subjects(target_type, target, clean),
    )


def event_time(previous: datetime) -> datetime:
    """An event's time: now, but never earlier than the previous event of its chain.

    Both write paths take it this way (on PostgreSQL, settle_audit_append
    does), so time order follows sequence order even when a writer waited for
    the chain lock or another application server's clock is behind.
    """
    return max(timezone.now(), previous)


def _next_row(draft: _Draft, chain: AuditChain) -> dict[str, Any]:
    """The column values (attribute names) of the event that follows the locked head `chain`, hash included."""
    row = {
        **draft.columns(),
        "public_id": uuid.uuid4(),
        "chain_id": chain.pk,
        "sequence": chain.last_sequence + 1,
        "occurred_at": event_time(chain.updated_at),
        "prev_hash": chain.last_hash,
        "hash": "",
    }
    row["hash"] = event_hash(_canonical_record(row, draft.chain_key))
    return row


def _locked_chain(tenant: Tenant | None) -> AuditChain:
    """The chain's head row, locked until the surrounding transaction ends (ORM path)."""
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


def _append_portable(draft: _Draft) -> AuditEvent:
    """Append through the ORM: any database (the embedded SQLite default)."""
    chain = _locked_chain(draft.tenant)
    event = AuditEvent(**_next_row(draft, chain))
    event.chain, event.tenant = chain, draft.tenant
    event.save(force_insert=True)
    moved = {"last_sequence": event.sequence, "last_hash": event.hash, "updated_at": event.occurred_at}
    AuditChain.objects.filter(pk=chain.pk).update(**moved)
    for name, value in moved.items():
        setattr(chain, name, value)
    if draft.subjects:
        AuditEventSubject.objects.bulk_create(
            [
                AuditEventSubject(event=event, tenant=draft.tenant, subject_type=kind, subject_id=ref)
                for kind, ref in draft.subjects
            ]
        )
    return event


# settle_audit_append (migration audit 0007) locks the head, takes the event's
# time as event_time does (from the reading passed in), hashes and writes
# event, head and subjects: the steps of the ORM path, in one round trip.
_APPEND_SQL = (
    "SELECT out_event_id, out_chain_id, out_sequence, out_occurred_at, out_prev_hash, out_hash "
    "FROM settle_audit_append(%s, %s, %s, %s::uuid, %s::uuid, %s, %s, %s, %s, %s, %s::inet, %s, %s::json, "
    "%s::text[], %s::text[], %s::text[])"
)


def _append_params(draft: _Draft, public_id: uuid.UUID) -> list[Any]:
    """Parameters of _APPEND_SQL: the event's own values, its canonical JSON around the holes, its subjects."""
    known = _record_but_chain_values({**draft.columns(), "public_id": public_id}, draft.chain_key)
    actor = known["actor_user_id"]
    params: list[Any] = [draft.chain_key, draft.tenant_id, timezone.now(), str(public_id), actor]
    params += [draft.actor_role, draft.action, draft.target_type, draft.target_id, draft.outcome]
    params += [draft.source_ip, draft.request_id]
    # Details as the very text the hash covers (audit.fields): json keeps it as given.
    params += [canonical_json(draft.details), list(canonical_template(known))]
    return params + [[kind for kind, _ in draft.subjects], [ref for _, ref in draft.subjects]]


@functools.cache
def _attnames(model: type[models.Model]) -> tuple[str, ...]:
    return tuple(field.attname for field in model._meta.concrete_fields)


def _loaded(model: type[_M], using: str, row: Mapping[str, Any]) -> _M:
    """An instance of a row this process just wrote, as a query would return it (no round trip)."""
    names = _attnames(model)
    return model.from_db(using, names, [row[name] for name in names])


def _append_postgresql(draft: _Draft, using: str) -> AuditEvent:
    """Append in one statement: settle_audit_append does what _append_portable does."""
    public_id = uuid.uuid4()
    with connections[using].cursor() as cursor:
        cursor.execute(_APPEND_SQL, _append_params(draft, public_id))
        event_id, chain_id, sequence, occurred_at, prev_hash, digest = cursor.fetchone()
    row = {
        **draft.columns(),
        "id": event_id,
        "public_id": public_id,
        "chain_id": chain_id,
        "sequence": sequence,
        "occurred_at": occurred_at,
        "prev_hash": prev_hash,
        "hash": digest,
    }
    event = _loaded(AuditEvent, using, row)
    # Its relations as the ORM path leaves them: the caller's tenant and the moved head.
    head = {"id": chain_id, "key": draft.chain_key, "tenant_id": draft.tenant_id}
    head.update(last_sequence=sequence, last_hash=digest, updated_at=occurred_at)
    event.chain, event.tenant = _loaded(AuditChain, using, head), draft.tenant
    return event


def _recording_scope(tenant: Tenant | None) -> AbstractContextManager[Scope | None]:
    """The row-level security scope an event is appended in.

    Inside a scope the caller's scope stands, so PostgreSQL still refuses an
    event for another clinic's chain. Outside any scope (platform-host
    requests, the sign-in signals, tasks) the event is appended in its own
    chain's scope: the platform chain is visible only in the platform scope.
    """
    if active_scope() is not None:
        return nullcontext()
    return platform_scope() if tenant is None else tenant_scope(tenant)


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
    draft = _draft(
        action=action,
        tenant=tenant,
        outcome=outcome,
        actor=actor,
        actor_role=actor_role,
        target_type=target_type,
        target_id=target_id,
        request=request,
        details=details,
        source_ip=source_ip,
    )
    using = router.db_for_write(AuditEvent)
    # No savepoint: a failure to record must fail the act it records, and
    # skipping SAVEPOINT/RELEASE saves two round trips per event.
    with _recording_scope(tenant), transaction.atomic(using=using, savepoint=False):
        if connections[using].vendor in FAST_PATH_VENDORS:
            event = _append_postgresql(draft, using)
        else:
            event = _append_portable(draft)
    return event
